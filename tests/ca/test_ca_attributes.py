"""The XOS attribute extensions: exact DER round trips, and nothing else decodes."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

import ca
from ca.keys import MAX_INPUT_BYTES

GID = uuid.UUID("6f1c8e52-3a7d-4b8e-9a51-0c2d4e6f8a10")


def vo(**changes):
    fields = dict(global_user_id=GID, primary_vo="atlas", other_vos=(), primary_group="/atlas",
                  other_groups=(), roles=())
    fields.update(changes)
    return ca.VOAttributes(**fields)


def test_the_arc_and_oids_are_fixed():
    assert ca.XOS_ARC == "2.25.91721424635292082939482028897620333380"
    assert ca.XOS_VO_ATTRIBUTES_OID.dotted_string == ca.XOS_ARC + ".1"
    assert ca.XOS_NODE_ATTRIBUTES_OID.dotted_string == ca.XOS_ARC + ".2"


def test_vo_attributes_round_trip(attributes):
    der = attributes.to_der()
    assert ca.VOAttributes.from_der(der) == attributes
    assert b"urn:uuid:6f1c8e52-3a7d-4b8e-9a51-0c2d4e6f8a10" in der


def test_exact_der_of_a_minimal_value():
    der = vo().to_der()
    assert der == (
        bytes.fromhex("3047020101")  # SEQUENCE of 71 bytes, version 1
        + b"\x0c\x2d" + b"urn:uuid:" + str(GID).encode()
        + b"\x0c\x05atlas" + b"\x30\x00" + b"\x0c\x06/atlas" + b"\x30\x00" + b"\x30\x00"
    )


def test_lists_are_stored_as_tuples():
    value = vo(other_vos=["cms"], other_groups=["/cms"], roles=["/atlas/Role=admin"])
    assert value.other_vos == ("cms",) and value.other_groups == ("/cms",)
    assert hash(value)  # frozen and hashable


def test_node_attributes_round_trip():
    value = ca.NodeAttributes(hostname="wn01.grid.example", vos=("atlas", "cms"))
    assert ca.NodeAttributes.from_der(value.to_der()) == value
    assert ca.NodeAttributes.from_der(ca.NodeAttributes("n1", ()).to_der()).vos == ()


@pytest.mark.parametrize(("changes", "message"), [
    ({"global_user_id": str(GID)}, "must be a uuid.UUID"),
    ({"primary_vo": "Atlas"}, "primary VO 'Atlas' is not a VO/group name"),
    ({"other_vos": ("cms", "bad_vo")}, "other VO 'bad_vo'"),
    ({"other_vos": "cms"}, "not a single string"),
    ({"other_vos": ("atlas",)}, "VO 'atlas' is listed twice"),
    ({"primary_group": "atlas"}, "not a group path"),
    ({"primary_group": "/cms"}, "not in the primary VO 'atlas'"),
    ({"primary_group": "/atlas//x"}, "component"),
    ({"other_groups": ("/lhcb",)}, "'/lhcb' is not in one of the user's VOs"),
    ({"other_groups": ("/atlas",)}, "group '/atlas' is listed twice"),
    ({"roles": ("/atlas/production",)}, "is not a role like"),
    ({"roles": ("/Role=admin",)}, "is not a role like"),
    ({"roles": ("/atlas/Role=pro duction",)}, "is not a role like"),
    ({"roles": ("/lhcb/Role=admin",)}, "not in one of the user's VOs"),
    ({"roles": ("/atlas/Role=a", "/atlas/Role=a")}, "listed twice"),
])
def test_invalid_vo_attributes_are_refused(changes, message):
    with pytest.raises(ca.PolicyError, match=message):
        vo(**changes)


@pytest.mark.parametrize(("hostname", "vos", "message"), [
    ("WN01.example", (), "must be lower case"),
    ("wn_01.example", (), "not a DNS host name"),
    ("wn01.example", ("atlas", "atlas"), "listed twice"),
    ("wn01.example", ("ATLAS",), "not a VO/group name"),
])
def test_invalid_node_attributes_are_refused(hostname, vos, message):
    with pytest.raises(ca.PolicyError, match=message):
        ca.NodeAttributes(hostname=hostname, vos=vos)


def test_trailing_bytes_are_refused(attributes):
    with pytest.raises(ca.MalformedInput, match="followed by 1 trailing bytes"):
        ca.VOAttributes.from_der(attributes.to_der() + b"\x00")


def test_another_version_is_refused():
    der = bytearray(vo().to_der())
    assert der[2:5] == b"\x02\x01\x01"
    der[4] = 2
    with pytest.raises(ca.MalformedInput, match="version 2; only 1 is known"):
        ca.VOAttributes.from_der(bytes(der))


def test_non_canonical_length_is_refused():
    der = vo().to_der()
    long_form = b"\x30\x81" + der[1:]  # same content, length in long form
    with pytest.raises(ca.MalformedInput, match="not in canonical DER"):
        ca.VOAttributes.from_der(long_form)


def test_a_wrong_inner_type_is_refused():
    der = vo().to_der().replace(b"\x0c\x05atlas", b"\x04\x05atlas")  # OCTET STRING
    with pytest.raises(ca.MalformedInput, match="cannot decode XOS VO attributes"):
        ca.VOAttributes.from_der(der)


def test_invalid_utf8_is_refused():
    der = vo().to_der().replace(b"\x0c\x05atlas", b"\x0c\x05atl\xff\xfe")
    with pytest.raises(ca.MalformedInput, match="cannot decode"):
        ca.VOAttributes.from_der(der)


@pytest.mark.parametrize(("old", "new", "message"), [
    (b"urn:uuid:6f1c", b"urn:uuix:6f1c", "not a urn:uuid: URN"),
    (b"6f1c8e52-3a7d", b"6F1C8E52-3a7d", "not in canonical form"),
    (b"6f1c8e52-3a7d", b"zz1c8e52-3a7d", "not a UUID"),
    (b"\x0c\x06/atlas", b"\x0c\x06/cmsxx", "invalid XOS VO attributes"),
])
def test_decoded_values_are_validated(old, new, message):
    der = vo().to_der().replace(old, new)
    with pytest.raises(ca.MalformedInput, match=message):
        ca.VOAttributes.from_der(der)


@pytest.mark.parametrize("der", [b"", b"garbage", b"\x30\x00", b"\x30\x03\x02\x01\x01"])
def test_garbage_is_refused(der):
    with pytest.raises(ca.MalformedInput):
        ca.VOAttributes.from_der(der)
    with pytest.raises(ca.MalformedInput):
        ca.NodeAttributes.from_der(der)


def test_oversized_der_is_refused():
    with pytest.raises(ca.MalformedInput, match="at most 16384 bytes"):
        ca.VOAttributes.from_der(b"\x30" * (MAX_INPUT_BYTES + 1))


def test_node_der_is_not_vo_der():
    with pytest.raises(ca.MalformedInput):
        ca.VOAttributes.from_der(ca.NodeAttributes("n1.example", ("atlas",)).to_der())


def test_decoded_node_values_are_validated():
    der = ca.NodeAttributes("wn01.example", ("atlas",)).to_der().replace(b"wn01", b"WN01")
    with pytest.raises(ca.MalformedInput, match="invalid XOS node attributes: .*lower case"):
        ca.NodeAttributes.from_der(der)


@pytest.mark.parametrize(("oid", "message"), [
    (b"\x06\x03\x55\x1d\x11", "Duplicate"),  # EKU turned into a second SAN
    (b"\x06\x03\x55\x1d\x1e", "cannot parse"),  # EKU content read as nameConstraints
])
def test_a_certificate_with_broken_extensions_is_malformed(issuing, make_csr, attributes, oid,
                                                           message):
    cert = ca.issue_user_certificate(issuing, make_csr(), username="alice",
                                     attributes=attributes, lifetime=timedelta(hours=1))
    der = cert.public_bytes(serialization.Encoding.DER)
    eku = b"\x06\x03\x55\x1d\x25"
    assert der.count(eku) == 1
    broken = x509.load_der_x509_certificate(der.replace(eku, oid))
    with pytest.raises(ca.MalformedInput, match=message):
        ca.VOAttributes.from_certificate(broken)


def test_from_certificate_without_the_extension_is_none(issuing):
    assert ca.VOAttributes.from_certificate(issuing.certificate) is None
    assert ca.NodeAttributes.from_certificate(issuing.certificate) is None
