"""The certificates page in headless Chromium, against a live service: a member uploads a
CSR file through the file input and pastes an SSH public key, sees each certificate
issued, revokes one, and the console stays clean. The page is kept as
artifacts/screenshots/portal-certificates.png.

The service and its seed are test_portal_browser's (erin is an active member of atlas);
the CSR and the SSH key are made here with ``cryptography``."""

from __future__ import annotations

from pathlib import Path

import test_portal_browser
from browser import console_problems, fill, screenshot, submit, text, wait_for
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from e2e.live import Live
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from test_certificates import make_csr, ssh_key
from test_portal_browser import sign_in

live = test_portal_browser.live  # the same seeded service, one for this module


def test_a_member_uploads_a_csr_and_gets_a_certificate(live: Live, browser: WebDriver,
                                                       tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    request = tmp_path / "erin.csr"
    request.write_text(make_csr(key))
    sign_in(browser, live, "erin")
    browser.find_element(By.LINK_TEXT, "My certificates").click()
    wait_for(browser, "input[name=csr_file]")
    assert "No certificate has been issued to you yet." in text(browser)
    # an SSH certificate for a pasted public key first, then revoke it
    fill(browser, "key_text", ssh_key()[1] + " erin@laptop")
    submit(browser, "Request SSH certificate")
    assert "Your new SSH certificate" in text(browser)
    line = wait_for(browser, "#issued-certificate").text
    assert line.startswith("ssh-ed25519-cert-v01@openssh.com ")
    submit(browser, "form.revoke button")
    assert "is revoked." in text(browser)
    # the XOS certificate for the CSR file, through the file input
    browser.find_element(By.CSS_SELECTOR, "input[name=csr_file]").send_keys(str(request))
    submit(browser, "Request XOS certificate")
    assert "Your new XOS certificate" in text(browser)
    pem = wait_for(browser, "#issued-certificate").text
    cert = x509.load_pem_x509_certificate(pem.encode())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "erin"
    assert cert.public_key() == key.public_key()
    assert len(x509.load_pem_x509_certificates(
        wait_for(browser, "#issued-chain").text.encode())) == 2
    rows = [row.text for row in browser.find_elements(By.CSS_SELECTOR, ".listing tbody tr")]
    assert len(rows) == 2 and "valid" in rows[0] and "XOS" in rows[0]
    assert "revoked" in rows[1] and "SSH" in rows[1]
    screenshot(browser, "portal-certificates")
    assert console_problems(browser) == []
