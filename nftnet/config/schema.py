"""marshmallow schemas for each section of the config file, producing the model dataclasses.

Each section is loaded on its own so that error paths name the user's keys
(``endpoints.web.publish[2]``) rather than marshmallow's ``key``/``value`` nesting.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network, IPv6Network, ip_address, ip_network
from typing import Any

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates_schema,
)

from nftnet import names
from nftnet.config.publish import parse_publish

# What iproute2 accepts in an interface name, minus characters that need quoting in nft text.
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]+$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_ifname(value: str) -> None:
    """Raise ValidationError unless ``value`` can name a Linux interface."""
    if not value or len(value) > names.IFNAME_MAX:
        raise ValidationError(f"interface name {value!r} must be 1-{names.IFNAME_MAX} characters")
    if not _IFNAME.match(value) or value in (".", ".."):
        raise ValidationError(f"interface name {value!r} may hold only letters, digits, _ . -")


class IPField(fields.Field):
    """An address of the given version (4 or 6, or None for either)."""

    def __init__(self, version: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.version = version

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        try:
            addr = ip_address(str(value))
        except ValueError:
            raise ValidationError(f"{value!r} is not an IP address") from None
        if self.version and addr.version != self.version:
            raise ValidationError(f"{value!r} is not an IPv{self.version} address")
        return addr


class SubnetField(fields.Field):
    """A CIDR with no host bits set: ``172.31.1.5/24`` is an error, not silently masked."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        text = str(value)
        if "/" not in text:
            raise ValidationError(f"{text!r} has no prefix length; write it as a CIDR")
        try:
            net = ip_network(text, strict=True)
        except ValueError:
            try:
                loose = ip_network(text, strict=False)
            except ValueError:
                raise ValidationError(f"{text!r} is not a CIDR like 172.31.1.0/24") from None
            raise ValidationError(f"{text!r} has host bits set; did you mean {loose}?") from None
        limit = 30 if net.version == 4 else 126
        if net.prefixlen > limit:
            raise ValidationError(f"{value!r} is too small: at most /{limit} leaves room for hosts")
        return net


class NetworkSchema(Schema):
    class Meta:
        unknown = RAISE

    bridge = fields.String(validate=check_ifname)
    subnet = SubnetField()
    subnets = fields.List(SubnetField(), validate=validate.Length(min=1, max=2))
    gateway = IPField(4)
    gateway6 = IPField(6)
    icc = fields.Boolean(load_default=True)
    masquerade = fields.Boolean(load_default=True)
    internal = fields.Boolean(load_default=False)
    host_binding_ipv4 = IPField(4, load_default=IPv4Address("0.0.0.0"))
    mtu = fields.Integer(load_default=1500, validate=validate.Range(68, 65535))

    @validates_schema
    def _one_subnet_per_family(self, data: dict[str, Any], **kwargs: Any) -> None:
        if "subnet" in data and "subnets" in data:
            raise ValidationError("give either subnet or subnets, not both", "subnets")
        subnets = data.get("subnets") or ([data["subnet"]] if "subnet" in data else [])
        if not subnets:
            raise ValidationError("a network needs a subnet (or subnets)", "subnets")
        v4 = [s for s in subnets if s.version == 4]
        if len(v4) > 1 or len(subnets) - len(v4) > 1:
            raise ValidationError("at most one IPv4 and one IPv6 subnet per network", "subnets")
        for key, version in (("gateway", 4), ("gateway6", 6)):
            if key in data and not any(s.version == version for s in subnets):
                raise ValidationError(f"no IPv{version} subnet to hold this gateway", key)

    @post_load
    def _make(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        subnets = data.pop("subnets", None) or [data.pop("subnet")]
        data.pop("subnet", None)
        for s in subnets:
            if isinstance(s, IPv4Network):
                data["subnet4"] = s
                data.setdefault("gateway4", data.pop("gateway", None) or next(s.hosts()))
            elif isinstance(s, IPv6Network):
                data["subnet6"] = s
                data.setdefault("gateway6", next(s.hosts()))
        data.pop("gateway", None)
        return data


class PublishField(fields.Field):
    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, str | int):
            raise ValidationError("a publish entry is a string like \"8080:80/tcp\"")
        try:
            return parse_publish(str(value))
        except ValueError as e:
            raise ValidationError(str(e)) from None


class EndpointSchema(Schema):
    class Meta:
        unknown = RAISE

    network = fields.String(required=True)
    ipv4 = IPField(4)
    ipv6 = IPField(6)
    publish = fields.List(PublishField(), load_default=list, allow_none=True)

    @post_load
    def _tuple(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        data["publish"] = tuple(data["publish"] or ())
        return data


class UserRuleField(fields.Field):
    """nft text, or ``{LANGUAGE: text}`` with an optional ``family`` (translated in load.py)."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str):
            return value
        if not isinstance(value, dict):
            raise ValidationError('a user rule is nft text or a mapping like {iptables: "..."}')
        languages = [k for k in value if k != "family"]
        if len(languages) != 1 or not all(isinstance(v, str) for v in value.values()):
            raise ValidationError('give one language and its rule text, e.g. {iptables: '
                                  '"-i eth0 -j DROP"} (plus family: ip6 for an IPv6 rule)')
        return dict(value)


class TopSchema(Schema):
    """The top level; sections are checked further by ``load.py``."""

    class Meta:
        unknown = RAISE

    version = fields.Integer(required=True, validate=validate.Equal(1, error="must be 1"))
    networks = fields.Dict(keys=fields.String(), load_default=dict, allow_none=True)
    endpoints = fields.Dict(keys=fields.String(), load_default=dict, allow_none=True)
    user_rules = fields.List(UserRuleField(), load_default=None, allow_none=False)

