"""Which interface is the WAN, by evidence: routes, addresses, layering, names; traffic last.

Sans-IO: varbinds in, a ``WanChoice`` out. The evidence, strongest first:

1. the inventory's ``router.wan_interface`` pattern (always wins);
2. the IPv4 default route (ipRouteTable, ipCidrRouteTable, inetCidrRouteTable); an ifIndex of 0
   (RouterOS) is resolved through the next hop: the interface whose subnet holds it. A default
   route on a management port (an appliance's own route, not the site's) does not count;
3. a public (globally routable) IPv4 address on the interface;
4. what the device calls it: WAN words in ifAlias (written by a person, so they weigh more) or
   ifName/ifDescr, LAN words against (an alias saying LAN beats a port named ``wan1``);
   an access ifType (DSL, DOCSIS, PON, cellular) that is up; a vendor's mobile table
   that says the modem on this interface is connected (Teltonika), or that the cellular link
   is a backup (Teldat APN ``backup...``);
5. ifOperStatus down counts against, tunnels and PPP over L2TP are not access links;
6. traffic (in+out octets) only to break a tie, then the lower ifIndex.

With no positive evidence at all, the busiest interface is taken only when the device shows no
IP addresses (nothing contradicts it) or the interface holds one; otherwise nothing is chosen
(an access point has no WAN). Every choice has a ``reason`` naming its evidence.

Logical interfaces are traced to the physical port under them (``port``): ifStackTable first,
then the naming conventions the corpus shows (``Port1.90_ppp`` over ``Port1.90`` over
``Port1``, ``X1:V10`` over ``X1``, ``qmimux0`` over ``wwan0``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from netready.collectors.dsl import DSL_IFTYPES
from netready.collectors.snmp.mib import (
    INET_CIDR_DEFAULT_IFINDEX,
    IP_AD_IFINDEX,
    IP_AD_MASK,
    IP_CIDR_DEFAULT_IFINDEX,
    IP_ROUTE_DEFAULT_IFINDEX,
    IP_ROUTE_DEFAULT_NEXT_HOP,
    SYS_DESCR,
    TELDAT_CELL_APN,
    TELTONIKA_MOBILE,
    Iface,
    Value,
    as_int,
    as_text,
    column,
    interfaces,
)

LOOPBACK = 24
PPP = 23
TUNNEL = 131
DOCSIS_IFTYPES: frozenset[int] = frozenset({127, 128, 129, 205})
PON_IFTYPES: frozenset[int] = frozenset({250})  # gpon
CELLULAR_IFTYPES: frozenset[int] = frozenset({243, 244})  # wwanPP, wwanPP2
ACCESS_IFTYPES: frozenset[int] = DSL_IFTYPES | DOCSIS_IFTYPES | PON_IFTYPES | CELLULAR_IFTYPES

#: Words (whole tokens of a name, see ``tokens``) that say "the way out".
WAN_WORDS: frozenset[str] = frozenset(
    {
        "wan", "wwan", "internet", "isp", "outside", "uplink", "broadband", "ftth", "fttp", "fttc",
        "fttx", "fibre", "fiber", "fibra", "gpon", "xgspon", "pon", "ont", "dsl", "vdsl", "adsl",
        "shdsl", "gshdsl", "efm", "ptm", "lte", "cellular", "mobile", "qmimux", "cable", "cbl",
        "cm", "reseau", "liaison"
    }
)  # fmt: skip
#: Weaker WAN words: PPP and dial interfaces are as often VPNs as access links.
WEAK_WAN_WORDS: frozenset[str] = frozenset({"ppp", "pppoe", "dialer", "atm"})
#: Words that say "inside", "management" or "not an access link".
LAN_WORDS: frozenset[str] = frozenset(
    {
        "lan", "inside", "internal", "client", "customer", "guest", "guests", "home", "dmz",
        "voice", "voix", "wlan", "wifi", "wl", "bridge", "br", "bvi", "switch", "mgmt",
        "management", "oob", "vpn", "ipsec", "tunnel", "gre", "wg", "test", "loopback", "lo",
        "trunk", "ha", "sync", "dados", "utilizadores", "impressoras", "telefones"
    }
)  # fmt: skip
#: What a person writes on a LAN-side sub-interface (used to call its parent a LAN trunk).
LAN_LABELS: frozenset[str] = frozenset(
    "lan inside internal client customer guest guests home dmz".split()  # noqa: SIM905
)
MANAGEMENT_WORDS: frozenset[str] = frozenset({"mgmt", "management", "oob"})
CELLULAR_WORDS: frozenset[str] = frozenset({"wwan", "lte", "cellular", "mobile", "qmimux"})
_GEN = re.compile(r"(?<![a-z0-9])[345]g(?![a-z0-9])", re.IGNORECASE)
_TOKEN = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")


def tokens(text: str) -> set[str]:
    """Lower-case word tokens of a name: ``UsbLte0`` -> usb, lte; ``X1 (WAN)`` -> x, wan;
    ``br-lan`` -> br, lan; ``vlan2`` -> vlan (never lan); ``4G`` -> 4g."""
    out = {t.lower() for t in _TOKEN.findall(text) if not t.isdigit()}
    out |= {m.group(0).lower() for m in _GEN.finditer(text)}
    return out


def is_cellular_name(text: str) -> bool:
    t = tokens(text)
    return bool(t & CELLULAR_WORDS) or bool(_GEN.search(text))


# ------------------------------------------------------------------------ the evidence


@dataclass
class Route:
    table: str
    ifindex: int
    next_hop: str | None = None
    via_subnet: bool = False  # the agent said ifIndex 0: resolved through the next hop


@dataclass
class Topology:
    """What the device says about its interfaces, beyond ifTable."""

    ifaces: dict[int, Iface]
    addresses: dict[int, list[tuple[str, str | None]]] = field(default_factory=dict)
    lower: dict[int, list[int]] = field(default_factory=dict)  # ifStackTable higher -> lower
    upper: dict[int, list[int]] = field(default_factory=dict)
    routes: list[Route] = field(default_factory=list)
    sys_descr: str = ""
    mobile: dict[int, str] = field(default_factory=dict)  # ifIndex -> vendor mobile evidence
    backup: dict[int, str] = field(default_factory=dict)  # ifIndex -> why it is a backup

    def has_addresses(self) -> bool:
        return any(
            not ipaddress.ip_address(a).is_loopback
            for ix, rows in self.addresses.items()
            for a, _m in rows
            if _valid(a)
        )

    def public(self, ix: int) -> list[str]:
        return [a for a, _m in self.addresses.get(ix, []) if _valid(a) and _global(a)]

    def by_name(self, name: str) -> Iface | None:
        hits = [i for i in self.ifaces.values() if i.name == name]
        return min(hits, key=lambda i: i.index) if hits else None


def _valid(a: str) -> bool:
    try:
        ipaddress.IPv4Address(a)
    except ValueError:
        return False
    return True


def _global(a: str) -> bool:
    return ipaddress.IPv4Address(a).is_global


def _addresses(vb: Mapping[str, Value]) -> dict[int, list[tuple[str, str | None]]]:
    out: dict[int, list[tuple[str, str | None]]] = {}
    masks = column(vb, IP_AD_MASK)
    for idx, ix in column(vb, IP_AD_IFINDEX).items():
        n = as_int(ix)
        if n is None or len(idx) != 4:
            continue
        mask = masks.get(idx)
        out.setdefault(n, []).append(
            (".".join(map(str, idx)), mask if isinstance(mask, str) else None)
        )
    return out


def _stack(vb: Mapping[str, Value]) -> dict[int, list[int]]:
    lower: dict[int, list[int]] = {}
    for idx in column(vb, "1.3.6.1.2.1.31.1.2.1.3"):
        if len(idx) == 2 and idx[0] and idx[1]:
            lower.setdefault(idx[0], []).append(idx[1])
    return lower


def _on_subnet(hop: str, addrs: Mapping[int, list[tuple[str, str | None]]]) -> int | None:
    """The interface whose address/mask holds ``hop`` (the longest prefix)."""
    if not _valid(hop):
        return None
    best: tuple[int, int] | None = None
    for ix, rows in addrs.items():
        for a, m in rows:
            if not (_valid(a) and m and _valid(m)):
                continue
            net = ipaddress.IPv4Network(f"{a}/{m}", strict=False)
            inside = net.prefixlen and ipaddress.IPv4Address(hop) in net
            if inside and (best is None or net.prefixlen > best[0]):
                best = (net.prefixlen, ix)
    return best[1] if best else None


def default_routes(
    vb: Mapping[str, Value], addrs: Mapping[int, list[tuple[str, str | None]]]
) -> list[Route]:
    """The IPv4 default route rows of the three route tables, ifIndex 0 resolved."""
    raw: list[tuple[str, int, str | None]] = []
    ix = as_int(vb.get(IP_ROUTE_DEFAULT_IFINDEX))
    hop = as_text(vb.get(IP_ROUTE_DEFAULT_NEXT_HOP)) or None
    if ix is not None or hop:
        raw.append(("ipRouteTable", ix or 0, hop))
    for idx, v in column(vb, IP_CIDR_DEFAULT_IFINDEX).items():  # .<tos>.<next hop>
        if len(idx) == 5 and as_int(v) is not None:
            raw.append(("ipCidrRouteTable", as_int(v) or 0, ".".join(map(str, idx[1:]))))
    for idx, v in column(vb, INET_CIDR_DEFAULT_IFINDEX).items():
        # <policy len><policy...><next hop type><len><next hop>
        n = as_int(v)
        ipv4_hop = len(idx) >= 6 and idx[-6] == 1 and idx[-5] == 4
        hop4 = ".".join(map(str, idx[-4:])) if ipv4_hop else None
        if n is not None:
            raw.append(("inetCidrRouteTable", n, hop4))
    out: list[Route] = []
    for table, n, nh in raw:
        if n:
            out.append(Route(table, n, nh))
        elif nh and nh != "0.0.0.0":
            via = _on_subnet(nh, addrs)
            if via is not None:
                out.append(Route(table, via, nh, via_subnet=True))
    return out


def _vendor_mobile(
    vb: Mapping[str, Value],
    ifaces: Mapping[int, Iface],
    addrs: Mapping[int, list[tuple[str, str | None]]],
) -> dict[int, str]:
    """Teltonika's mobile table: a connected modem, tied to the interface holding its IP
    address or counting exactly its bytes."""
    out: dict[int, str] = {}
    state = column(vb, f"{TELTONIKA_MOBILE}.15")
    for (row, *_), st in state.items():
        if as_text(st).lower() != "connected":
            continue
        net = as_text(vb.get(f"{TELTONIKA_MOBILE}.16.{row}"))
        ip = as_text(vb.get(f"{TELTONIKA_MOBILE}.24.{row}"))
        counts = {as_int(vb.get(f"{TELTONIKA_MOBILE}.{c}.{row}")) for c in (22, 23)} - {None}
        for i in ifaces.values():
            if ip and any(a == ip for a, _m in addrs.get(i.index, [])):
                out[i.index] = f"mobile table: Connected {net}, IP {ip}"
            elif counts & {i.in_octets, i.out_octets}:
                out.setdefault(i.index, f"mobile table: Connected {net}, same byte count")
    return out


def _vendor_backup(vb: Mapping[str, Value], ifaces: Mapping[int, Iface]) -> dict[int, str]:
    """Teldat's cellular APN table (ifIndex-indexed): an APN named backup marks that modem
    (and its sibling channels, ``cellular1/x``) as the backup link."""
    out: dict[int, str] = {}
    for (ix, *_), apn in column(vb, TELDAT_CELL_APN).items():
        text = as_text(apn)
        if "backup" not in text.lower() or ix not in ifaces:
            continue
        slot = ifaces[ix].name.split("/")[0]
        for i in ifaces.values():
            if i.index == ix or (slot and i.name.startswith(slot + "/")):
                out[i.index] = f"cellular APN {text!r}"
    return out


def topology(vb: Mapping[str, Value], ifaces: Mapping[int, Iface] | None = None) -> Topology:
    ifs = dict(ifaces) if ifaces is not None else interfaces(vb)
    addrs = _addresses(vb)
    lower = _stack(vb)
    upper: dict[int, list[int]] = {}
    for hi, los in lower.items():
        for lo in los:
            upper.setdefault(lo, []).append(hi)
    return Topology(
        ifaces=ifs,
        addresses=addrs,
        lower=lower,
        upper=upper,
        routes=default_routes(vb, addrs),
        sys_descr=as_text(vb.get(SYS_DESCR)),
        mobile=_vendor_mobile(vb, ifs, addrs),
        backup=_vendor_backup(vb, ifs),
    )


# ----------------------------------------------------------------------- layering


_SUFFIX = re.compile(r"(?:\.\d+|:V\d+|_ppp)$")


def lower_of(topo: Topology, ix: int) -> int | None:
    """The interface directly under ``ix``: ifStackTable, else a naming convention."""
    for lo in sorted(topo.lower.get(ix, [])):
        if lo in topo.ifaces:
            return lo
    i = topo.ifaces.get(ix)
    if i is None:
        return None
    base = _SUFFIX.sub("", i.name)
    if base != i.name:
        parent = topo.by_name(base)
        if parent is not None and parent.index != ix:
            return parent.index
    m = re.fullmatch(r"qmimux(\d+)", i.name)
    if m:
        parent = topo.by_name(f"wwan{m.group(1)}")
        if parent is not None:
            return parent.index
    return None


def path_down(topo: Topology, ix: int) -> list[int]:
    """``ix`` and every layer under it down to the physical port."""
    out = [ix]
    while len(out) < 8:
        lo = lower_of(topo, out[-1])
        if lo is None or lo in out:
            break
        out.append(lo)
    return out


# ------------------------------------------------------------------------ the choice


@dataclass
class WanChoice:
    iface: Iface | None
    how: str  # inventory | auto
    reason: str
    confidence: str = "low"  # high | medium | low
    path: list[int] = field(default_factory=list)  # the WAN, then the layers under it
    port: Iface | None = None  # the physical port under it (the last of ``path``)


def _choice(topo: Topology, i: Iface, how: str, reason: str, confidence: str) -> WanChoice:
    path = path_down(topo, i.index)
    return WanChoice(i, how, reason, confidence, path, topo.ifaces[path[-1]])


@dataclass
class _Score:
    points: int = 0
    strong: bool = False  # route, public address or inventory
    named: bool = False  # positive name/type/vendor evidence
    why: list[str] = field(default_factory=list)

    def add(self, n: int, why: str) -> None:
        self.points += n
        self.why.append(why)


def _names(i: Iface) -> Iterable[tuple[str, str]]:
    if i.alias and i.alias not in (i.name, i.descr):
        yield "alias", i.alias
    yield "name", i.name
    if i.descr and i.descr != i.name:
        yield "descr", i.descr


def _vocabulary(i: Iface, s: _Score) -> None:
    for where, text in _names(i):
        t = tokens(text)
        weight = 150 if where == "alias" else 100
        wan = sorted(t & WAN_WORDS) or (["4g/5g"] if _GEN.search(text) else [])
        lan = sorted(t & LAN_WORDS)
        if wan:
            s.add(weight, f"{where} {text!r} says {wan[0]}")
            s.named = True
        elif t & WEAK_WAN_WORDS:
            s.add(weight // 2, f"{where} {text!r} says {sorted(t & WEAK_WAN_WORDS)[0]}")
            s.named = True
        if lan:
            s.add(-(weight + 50), f"{where} {text!r} says {lan[0]}")
        if "backup" in t:
            s.add(-250, f"{where} {text!r} says backup")


def _children_all_lan(topo: Topology, i: Iface) -> bool:
    kids = [topo.ifaces[h] for h in topo.upper.get(i.index, []) if h in topo.ifaces]
    kids += [
        k
        for k in topo.ifaces.values()
        if k.index != i.index and _SUFFIX.sub("", k.name) == i.name and k not in kids
    ]
    labelled = [k for k in kids if k.alias]
    if not labelled or len(labelled) < len([k for k in kids if k.oper_up]):
        return False
    return all(tokens(k.alias) & LAN_LABELS and not tokens(k.alias) & WAN_WORDS for k in labelled)


def _ppp_over_l2tp(topo: Topology, i: Iface) -> str | None:
    if i.iftype != PPP or not i.in_octets:
        return None
    for o in topo.ifaces.values():
        if o.index != i.index and "l2tp" in o.name.lower() and o.in_octets == i.in_octets:
            return o.name
    return None


def _score(topo: Topology, i: Iface, routes: Mapping[int, Route]) -> _Score:
    s = _Score()
    r = routes.get(i.index)
    names = set().union(*(tokens(t) for _w, t in _names(i)))
    if r is not None:
        if names & MANAGEMENT_WORDS:
            s.why.append(f"the {r.table} default route is on a management port: ignored")
        else:
            via = f" (next hop {r.next_hop} in its subnet)" if r.via_subnet else ""
            s.add(1000, f"{r.table} default route{via}")
            s.strong = True
    pub = topo.public(i.index)
    if pub:
        s.add(400, f"public address {pub[0]}")
        s.strong = True
    _vocabulary(i, s)
    if i.iftype in ACCESS_IFTYPES and i.oper_up:
        s.add(120, f"access ifType {i.iftype} up")
        s.named = True
    if i.index in topo.mobile:
        s.add(350, topo.mobile[i.index])
        s.named = True
    if i.index in topo.backup:
        s.add(-250, f"{topo.backup[i.index]}: a backup link")
    if _optical_port(topo, i):
        s.add(120, "the 1000BASE-X port (sysDescr)")
        s.named = True
    if i.oper_up is False:
        s.add(-300, "ifOperStatus down")
    if i.iftype == TUNNEL:
        s.add(-100, "a tunnel (ifType 131) rides on a WAN")
    l2tp = _ppp_over_l2tp(topo, i)
    if l2tp:
        s.add(-200, f"PPP over {l2tp} (same octets): a tunnel")
    if _children_all_lan(topo, i):
        s.add(-150, "every labelled sub-interface says LAN")
    return s


_OPTICAL = re.compile(r"(\d+)\s*ports?\s*1000BASE-T\b.*?(\d+)\s*ports?\s*1000BASE-X", re.I | re.S)


def _optical_port(topo: Topology, i: Iface) -> bool:
    """A CPE whose sysDescr lists N copper ports then the 1000BASE-X one: port N+1.."""
    m = _OPTICAL.search(topo.sys_descr)
    n = re.fullmatch(r"port\s*(\d+)", i.name.strip(), re.I)
    return bool(m and n and int(n.group(1)) > int(m.group(1)))


def _octets(i: Iface) -> int:
    return (i.in_octets or 0) + (i.out_octets or 0)


def _inventory(topo: Topology, pattern: str) -> WanChoice:
    rx = re.compile(pattern)
    hits = [
        i
        for i in topo.ifaces.values()
        if rx.search(i.name) or rx.search(i.alias) or rx.search(i.descr)
    ]
    hits.sort(key=lambda i: (not i.oper_up, i.index))
    if not hits:
        return WanChoice(None, "inventory", f"router.wan_interface /{pattern}/ matches nothing")
    i = hits[0]
    return _choice(
        topo, i, "inventory", f"router.wan_interface /{pattern}/ matches {i.name}", "high"
    )


def choose_wan(topo: Topology, pattern: str | None = None) -> WanChoice:
    """The WAN interface, how it was chosen and why (see the module's docstring)."""
    if pattern:
        return _inventory(topo, pattern)
    routes: dict[int, Route] = {}
    for r in topo.routes:
        routes.setdefault(r.ifindex, r)
    scored: list[tuple[tuple[int, int, int], Iface, _Score]] = []
    for i in topo.ifaces.values():
        if i.iftype == LOOPBACK:
            continue
        s = _score(topo, i, routes)
        scored.append(((s.points, _octets(i), -i.index), i, s))
    scored.sort(key=lambda t: t[0], reverse=True)
    for _key, i, s in scored:
        if s.points > 0 and (s.strong or s.named):
            conf = "high" if s.strong else "medium"
            why = "; ".join(w for w in s.why if w)
            return _choice(topo, i, "auto", why, conf)
        break
    # No positive evidence: the busiest interface, where nothing contradicts it.
    if not topo.ifaces:
        return WanChoice(None, "auto", "the agent returned no interfaces")
    addressed = topo.has_addresses()
    for _key, i, s in scored:
        if s.points < 0 or not _octets(i):
            continue
        if addressed and not topo.addresses.get(i.index):
            continue
        why = "traffic only: no route, address or name evidence; busiest interface"
        return _choice(topo, i, "auto", why, "low")
    return WanChoice(
        None,
        "auto",
        "no interface shows WAN evidence (default route, public address, WAN name, access "
        "ifType) and traffic alone cannot tell; set router.wan_interface in the inventory",
    )
