"""The join-token parameters. Only their names live here: hosts write and read the values."""

from __future__ import annotations

from typing import TYPE_CHECKING

from swarmwarden.domain.model import Role

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient


def token_parameter_names(prefix: str) -> list[str]:
    return [f"{prefix}/{role.value}" for role in Role]


class TokenParameters:
    def __init__(self, ssm: SSMClient, prefix: str) -> None:
        self._ssm = ssm
        self._prefix = prefix

    def delete(self) -> list[str]:
        """Deletes both token parameters; names that were already gone are not reported."""
        answer = self._ssm.delete_parameters(Names=token_parameter_names(self._prefix))
        return sorted(answer.get("DeletedParameters", []))
