"""The portal's forms: Flask-WTF, so every POST carries and checks a CSRF token."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField, SelectMultipleField, StringField
from wtforms.validators import AnyOf, DataRequired, Length, Optional

OPERATIONS = ("approve", "reject", "suspend", "reinstate", "remove")


class SignInForm(FlaskForm):  # type: ignore[misc]
    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])


class SignOutForm(FlaskForm):  # type: ignore[misc]
    """Signing out is a POST with a CSRF token: a link elsewhere cannot sign you out."""


class JoinForm(FlaskForm):  # type: ignore[misc]
    vo = StringField("VO", validators=[DataRequired(), Length(max=32)])
    reason = StringField("Why you need it", validators=[Optional(), Length(max=500)])


class MembersForm(FlaskForm):  # type: ignore[misc]
    """One operation on one or many members of a VO."""

    operation = HiddenField(validators=[DataRequired(), AnyOf(OPERATIONS)])
    users = SelectMultipleField(validators=[DataRequired()], validate_choice=False)
    reason = StringField("Reason", validators=[Optional(), Length(max=500)])


class EndSessionForm(FlaskForm):  # type: ignore[misc]
    family = HiddenField(validators=[DataRequired(), Length(max=32)])


class CreateVOForm(FlaskForm):  # type: ignore[misc]
    name = StringField("New VO name", validators=[DataRequired(), Length(max=32)])
    description = StringField("Description", validators=[Optional(), Length(max=500)])


class VOAdminForm(FlaskForm):  # type: ignore[misc]
    vo = StringField("VO", validators=[DataRequired(), Length(max=32)])
    username = StringField("User", validators=[DataRequired(), Length(max=64)])


class EnrolmentForm(FlaskForm):  # type: ignore[misc]
    node = StringField("Node", validators=[DataRequired(), Length(max=253)])
