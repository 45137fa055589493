"""Administration: roles (admin, auditor, security, privacy) of people and API keys, the
mandatory justification, runtime configuration, and the ``/admin`` API::

    admin = install_admin(app, services)   # app.state.admin; routers /admin and /audit
"""

from kroonika.admin._auth import (
    AdminServices,
    AuditedRoute,
    Principal,
    check_justification,
    require,
)
from kroonika.admin._config import KEYS, Change, ConfigKey, RuntimeConfig
from kroonika.admin._config_requests import ConfigRequest, ConfigRequests
from kroonika.admin._errors import (
    AdminError,
    ChangeConflict,
    ConfigInvalid,
    Forbidden,
    JobAlreadyRunning,
    JobRunFailed,
    JustificationMissing,
    NotAuthenticated,
    NotFound,
    PersonalCodeInText,
    RequestInvalid,
    RoleChangeRefused,
    TooLarge,
)
from kroonika.admin._free_text import refuse_personal_code
from kroonika.admin._install import install_admin, record_unrouted
from kroonika.admin._roles import ROLES, ApiKey, ApiKeys, Role, RoleRequest, RoleStore, parse_roles

__all__ = [
    "KEYS",
    "ROLES",
    "AdminError",
    "AdminServices",
    "ApiKey",
    "ApiKeys",
    "AuditedRoute",
    "Change",
    "ChangeConflict",
    "ConfigInvalid",
    "ConfigKey",
    "ConfigRequest",
    "ConfigRequests",
    "Forbidden",
    "JobAlreadyRunning",
    "JobRunFailed",
    "JustificationMissing",
    "NotAuthenticated",
    "NotFound",
    "PersonalCodeInText",
    "Principal",
    "RequestInvalid",
    "Role",
    "RoleChangeRefused",
    "RoleRequest",
    "RoleStore",
    "RuntimeConfig",
    "TooLarge",
    "check_justification",
    "install_admin",
    "parse_roles",
    "record_unrouted",
    "refuse_personal_code",
    "require",
]
