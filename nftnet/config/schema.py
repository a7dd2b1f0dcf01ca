"""marshmallow schemas for each section of the config file, producing the model dataclasses.

Each section is loaded on its own so that error paths name the user's keys
(``endpoints.web.publish[2]``) rather than marshmallow's ``key``/``value`` nesting.
"""

from __future__ import annotations

import re
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)
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
from nftnet.config.model import IPAddress
from nftnet.config.publish import parse_publish
from nftnet.errors import shown

# What iproute2 accepts in an interface name, minus characters that need quoting in nft text.
# \Z, not $: "$" also matches before a final newline.
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]+\Z")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\Z")

# Address space that is not a network's to hold: the kernel routes it itself (loopback,
# multicast, link-local, the limited broadcast), it means "any" (0.0.0.0/8, ::), or it
# stands for IPv4 (IPv4-mapped). A subnet may not overlap any of it; /0 would be every route.
_NOT_A_SUBNET = tuple((ip_network(cidr), why) for cidr, why in (
    ("0.0.0.0/8", "unspecified"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("224.0.0.0/4", "multicast"),
    ("255.255.255.255/32", "limited broadcast"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::ffff:0:0/96", "IPv4-mapped"),
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
))


def check_ifname(value: str) -> None:
    """Raise ValidationError unless ``value`` can name a Linux interface."""
    if not value or len(value) > names.IFNAME_MAX:
        raise ValidationError(f"interface name {shown(value)} must be 1-{names.IFNAME_MAX} "
                              "characters")
    if not _IFNAME.match(value) or value in (".", ".."):
        raise ValidationError(f"interface name {value!r} may hold only letters, digits, _ . -")


def _text(value: Any, what: str) -> str:
    """``value`` if it is a string; ValidationError otherwise, never a string made of it."""
    if isinstance(value, str):
        return value
    hint = " (YAML reads some unquoted values, like 80:30, as numbers)" \
        if isinstance(value, int | float) and not isinstance(value, bool) else ""
    raise ValidationError(f"{shown(value)} is not {what}: write it as a string{hint}")


def parse_ip(value: Any, version: int | None = None) -> IPAddress:
    """An address of ``version`` (4, 6, or None for either); ValidationError says why not."""
    text = _text(value, "an IP address")
    try:
        addr = ip_address(text)
    except ValueError:
        raise ValidationError(f"{shown(text)} is not an IP address") from None
    if version and addr.version != version:
        raise ValidationError(f"{text!r} is not an IPv{version} address")
    if isinstance(addr, IPv6Address) and addr.scope_id is not None:
        raise ValidationError(f"{text!r}: a scope (%{addr.scope_id}) has no meaning here")
    return addr


def parse_subnet(value: Any) -> IPv4Network | IPv6Network:
    """A CIDR a network can hold: no host bits (``172.31.1.5/24`` is an error, not silently
    masked), room for hosts, no address space of ``_NOT_A_SUBNET``."""
    text = _text(value, "a CIDR")
    if "/" not in text:
        raise ValidationError(f"{shown(text)} has no prefix length; write it as a CIDR")
    try:
        net = ip_network(text, strict=True)
    except ValueError:
        try:
            loose = ip_network(text, strict=False)
        except ValueError:
            raise ValidationError(f"{shown(text)} is not a CIDR like 172.31.1.0/24") from None
        raise ValidationError(f"{text!r} has host bits set; did you mean {loose}?") from None
    if "%" in text:
        raise ValidationError(f"{text!r}: a scope (%...) has no meaning in a subnet")
    limit = 30 if net.version == 4 else 126
    if net.prefixlen > limit:
        raise ValidationError(f"{text!r} is too small: at most /{limit} leaves room for hosts")
    if net.prefixlen == 0:
        raise ValidationError(f"{text!r} is the default route (every address), not a subnet")
    for reserved, why in _NOT_A_SUBNET:
        if net.overlaps(reserved):
            raise ValidationError(f"{text!r} holds {why} addresses ({reserved}): a network "
                                  "needs ordinary unicast addresses")
    return net


class IPField(fields.Field):
    """An address of the given version (4 or 6, or None for either)."""

    def __init__(self, version: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.version = version

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        return parse_ip(value, self.version)


class SubnetField(fields.Field):
    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        return parse_subnet(value)


class StrictBoolean(fields.Boolean):
    """true or false, not marshmallow's 1, "yes" or "off": a typo must not pass as a setting."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, bool):
            raise ValidationError(f"{shown(value)} is not true or false")
        return value


class NetworkSchema(Schema):
    class Meta:
        unknown = RAISE

    bridge = fields.String(validate=check_ifname)
    subnet = SubnetField()
    subnets = fields.List(SubnetField(), validate=validate.Length(min=1, max=2))
    gateway = IPField(4)
    gateway6 = IPField(6)
    icc = StrictBoolean(load_default=True)
    masquerade = StrictBoolean(load_default=True)
    internal = StrictBoolean(load_default=False)
    host_binding_ipv4 = IPField(4, load_default=IPv4Address("0.0.0.0"))
    mtu = fields.Integer(strict=True, load_default=1500, validate=validate.Range(68, 65535))

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
        text = _text(value, 'a publish entry like "8080:80/tcp"')
        try:
            return parse_publish(text)
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

    version = fields.Integer(required=True, strict=True,
                             validate=validate.Equal(1, error="must be 1"),
                             error_messages={"invalid": "must be 1 (the number)"})
    networks = fields.Dict(keys=fields.String(), load_default=dict, allow_none=True)
    endpoints = fields.Dict(keys=fields.String(), load_default=dict, allow_none=True)
    user_rules = fields.List(UserRuleField(), load_default=None, allow_none=False)

