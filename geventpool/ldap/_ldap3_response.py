"""The answer of ldap3's ``Connection.search``: ``result`` and ``response`` dicts, ``entries``.

ldap3's shapes, built from python-ldap's: ``response`` items are
``{"dn", "attributes", "raw_attributes", "type": "searchResEntry"}`` (values
always lists: str, or bytes where not UTF-8) or ``{"uri": [...], "type":
"searchResRef"}``; ``result`` is ``{"result", "description", "dn",
"message", "referrals", "type"}``.  Plain values: nothing here talks to a server.
"""

from __future__ import annotations

from typing import Any, Iterator, NoReturn

from ldap.controls import SimplePagedResultsControl

__all__ = ["Entry", "Attribute", "make_result", "make_response", "response_controls"]

#: RFC 4511's names of the result codes (ldap3's ``description``).
_DESCRIPTIONS = {
    0: "success", 1: "operationsError", 2: "protocolError", 3: "timeLimitExceeded",
    4: "sizeLimitExceeded", 5: "compareFalse", 6: "compareTrue", 7: "authMethodNotSupported",
    8: "strongerAuthRequired", 10: "referral", 11: "adminLimitExceeded",
    12: "unavailableCriticalExtension", 13: "confidentialityRequired", 14: "saslBindInProgress",
    16: "noSuchAttribute", 17: "undefinedAttributeType", 18: "inappropriateMatching",
    19: "constraintViolation", 20: "attributeOrValueExists", 21: "invalidAttributeSyntax",
    32: "noSuchObject", 33: "aliasProblem", 34: "invalidDNSyntax", 36: "aliasDereferencingProblem",
    48: "inappropriateAuthentication", 49: "invalidCredentials", 50: "insufficientAccessRights",
    51: "busy", 52: "unavailable", 53: "unwillingToPerform", 54: "loopDetect", 64: "namingViolation",
    65: "objectClassViolation", 66: "notAllowedOnNonLeaf", 67: "notAllowedOnRDN",
    68: "entryAlreadyExists", 69: "objectClassModsProhibited", 71: "affectsMultipleDSAs", 80: "other",
}


def make_result(
    code: int, message: str = "", dn: str = "", referrals: list[str] | None = None,
    kind: str = "searchResDone",
) -> dict[str, Any]:
    """ldap3's ``result`` dict for result ``code`` (RFC 4511's name as ``description``)."""
    return {
        "result": code, "description": _DESCRIPTIONS.get(code, "other"), "dn": dn, "message": message,
        "referrals": referrals, "type": kind,
    }


def _decode(value: bytes) -> str | bytes:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value


class Attribute:
    """The values of one attribute of an :class:`Entry`: ``.values`` (a list), ``.value`` (the
    single value, or the list when there are several), ``len()``, iteration, ``str()``."""

    def __init__(self, key: str, values: list[Any]) -> None:
        self.key = key
        self.values = values

    @property
    def value(self) -> Any:
        return self.values[0] if len(self.values) == 1 else self.values

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.values)

    def __contains__(self, item: object) -> bool:
        return item in self.values

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Attribute):
            return self.values == other.values
        return bool(self.value == other)

    __hash__ = None  # type: ignore[assignment]

    def __str__(self) -> str:
        return str(self.values[0]) if len(self.values) == 1 else str(self.values)

    def __repr__(self) -> str:
        return f"{self.key}: {self}"


class Entry:
    """One entry of :attr:`Connection.entries`: ``entry_dn``, ``entry_attributes`` (names),
    ``entry_attributes_as_dict``, ``entry_raw_attributes``, and each attribute as
    ``entry.cn`` or ``entry["cn"]`` (an :class:`Attribute`; names are case-insensitive).

    A snapshot of the search's answer, not ldap3's writable entry: nothing here talks to the server.
    """

    def __init__(self, dn: str, attributes: dict[str, list[Any]], raw: dict[str, list[bytes]]) -> None:
        d = self.__dict__
        d["entry_dn"] = dn
        d["entry_attributes_as_dict"] = attributes
        d["entry_raw_attributes"] = raw
        d["_lower"] = {name.lower(): name for name in attributes}

    @property
    def entry_attributes(self) -> list[str]:
        return list(self.__dict__["entry_attributes_as_dict"])

    def __getitem__(self, name: str) -> Attribute:
        key = self.__dict__["_lower"].get(name.lower())
        if key is None:
            raise KeyError(f"{name!r}: no such attribute in {self.__dict__['entry_dn']!r}")
        return Attribute(key, self.__dict__["entry_attributes_as_dict"][key])

    def __getattr__(self, name: str) -> Attribute:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"{name!r}: no such attribute in {self.__dict__['entry_dn']!r}") from None

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError("Entry is read-only (a snapshot of a search's answer)")

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self.__dict__["_lower"]

    def __iter__(self) -> Iterator[Attribute]:
        return (self[name] for name in self.__dict__["entry_attributes_as_dict"])

    def __repr__(self) -> str:
        return f"DN: {self.__dict__['entry_dn']}"


def make_response(found: list[tuple[str | None, Any]]) -> list[dict[str, Any]]:
    """ldap3's ``response`` list from python-ldap's ``(dn, attributes)`` pairs (``dn`` None: a
    continuation reference, its URLs as the value)."""
    response: list[dict[str, Any]] = []
    for dn, value in found:
        if dn is None:
            response.append({"uri": list(value), "type": "searchResRef"})
            continue
        raw = {name: list(values) for name, values in value.items()}
        decoded = {name: [_decode(v) for v in values] for name, values in raw.items()}
        response.append({"dn": dn, "attributes": decoded, "raw_attributes": raw, "type": "searchResEntry"})
    return response


def response_controls(controls: list[Any]) -> dict[str, Any]:
    """ldap3's ``result["controls"]``: by OID; the paged-results control's value as
    ``{"size", "cookie"}``, any other's as its encoded bytes."""
    result: dict[str, Any] = {}
    for control in controls:
        value: Any = getattr(control, "encodedControlValue", None)
        if isinstance(control, SimplePagedResultsControl):
            value = {"size": control.size, "cookie": control.cookie}
        result[control.controlType] = {
            "description": "", "criticality": bool(getattr(control, "criticality", False)), "value": value,
        }
    return result
