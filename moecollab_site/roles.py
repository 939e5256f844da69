"""Roles: contributors bring experts; maintainers review, train, promote; admins are superusers."""
from __future__ import annotations

from django.contrib.auth.models import Group, Permission, User

from moecollab_site.errors import forbidden

CONTRIBUTOR = "contributor"
MAINTAINER = "maintainer"

# app_label.codename granted to each role; one place says who may do what.
ROLE_PERMISSIONS: dict[str, list[str]] = {
    CONTRIBUTOR: [
        "training.view_job",
        "experts.add_expert",
        "experts.change_expert",
        "experts.add_expertversion",
        "experts.add_expertrequest",
    ],
    MAINTAINER: [
        "training.view_job",
        "training.add_job",
        "training.change_job",
        "experts.add_domain",
        "experts.change_domain",
        "experts.add_datasplit",
        "experts.view_datasplit",
        "experts.add_expert",
        "experts.add_expertversion",
        "experts.change_expertversion",
        "experts.add_reviewcomment",
        "experts.add_expertrequest",
        "experts.change_expertrequest",
        "gating.view_gatingversion",
        "gating.add_gatingversion",
        "gating.add_promotion",
        "gating.change_promotion",
    ],
}


def ensure_roles() -> None:
    """Create the role groups and (re)grant their permissions; safe to run any number of times."""
    for role, perms in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        wanted = []
        for dotted in perms:
            app_label, codename = dotted.split(".", 1)
            perm = Permission.objects.filter(
                content_type__app_label=app_label, codename=codename
            ).first()
            if perm is not None:
                wanted.append(perm)
        group.permissions.set(wanted)


def ensure_roles_after_migrate(sender, **kwargs) -> None:
    if sender.name == "moecollab_site":
        ensure_roles()


def is_maintainer(user) -> bool:
    if not user.is_authenticated:
        return False
    return user.is_superuser or user.groups.filter(name=MAINTAINER).exists()


def require_maintainer(user, what: str) -> None:
    """The one refusal for maintainer-only actions: 403, code "forbidden"."""
    if not is_maintainer(user):
        raise forbidden(f"only maintainers can {what}")


def is_contributor(user) -> bool:
    return bool(user.is_authenticated)


def user_add_role(*, user: User, role: str) -> None:
    ensure_roles()
    user.groups.add(Group.objects.get(name=role))
