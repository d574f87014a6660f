"""DN comparison (RFC 4514). Pure: for comparisons only, never sent to a server.

Two DNs name the same entry when their RDNs hold the same attribute types and values. The
string forms differ in ways that do not matter (``\\,`` and ``\\2C`` are the same comma, type
case, spaces around ``=``, ``,`` and ``+``, the order of the values of a multi-valued RDN) and
in ways that do: a space inside a value, or an escaped one at its ends, is part of the value,
so ``CN=Doe\\, John`` and ``CN=Doe\\,John`` are two entries. Splitting at every comma and
trimming each piece made those two equal.
"""

from __future__ import annotations

from string import hexdigits

# Characters that end a value or need escaping to stay inside one.
_SPECIAL = frozenset(',+"\\<>;=')
_RDN_SEPARATORS = frozenset(",;")


class _NotADn(ValueError):
    pass


def dn_rdns(dn: str) -> tuple[str, ...]:
    """Each RDN of ``dn`` in a canonical form: ``type=value`` pairs (types and values
    lower-cased, the values re-escaped one way) joined by ``+`` in sorted order.

    Raises ``ValueError`` when ``dn`` does not parse as a DN.
    """
    if not dn.strip():
        return ()
    return tuple(_canonical_rdn(piece) for piece in _rdn_pieces(dn))


def normalize_dn(dn: str) -> str:
    """A DN for equality tests and patterns (never sent to a server): :func:`dn_rdns` joined
    by ``,``. A piece that is not an RDN (the ``*`` of a pattern such as
    ``cn=doe\\, john,*``) is kept trimmed and lower-cased, its neighbours still canonical."""
    out: list[str] = []
    for piece in _rdn_pieces(dn):
        try:
            out.append(_canonical_rdn(piece))
        except ValueError:
            out.append(piece.strip().lower())
    return ",".join(out)


def dn_under(dn: str, base: str) -> bool:
    """Whether ``dn`` is ``base`` or an entry below it, RDN by RDN (an escaped comma inside a
    value is not a level: ``cn=x\\,dc=example,dc=org`` is not under ``dc=example,dc=org``)."""
    try:
        d, b = dn_rdns(dn), dn_rdns(base)
    except ValueError:
        d2, b2 = normalize_dn(dn), normalize_dn(base)
        return d2 == b2 or d2.endswith("," + b2)
    return len(d) >= len(b) and d[len(d) - len(b) :] == b


def _rdn_pieces(dn: str) -> list[str]:
    """``dn`` split at the commas (and RFC 1779 semicolons) that are neither escaped nor quoted."""
    pieces: list[str] = []
    start = i = 0
    quoted = False
    while i < len(dn):
        ch = dn[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif ch in _RDN_SEPARATORS and not quoted:
            pieces.append(dn[start:i])
            start = i + 1
        i += 1
    pieces.append(dn[start:])
    return pieces


def _canonical_rdn(piece: str) -> str:
    avas: list[str] = []
    i = 0
    while True:
        attr, i = _read_type(piece, i)
        value, i = _read_value(piece, i)
        avas.append(f"{attr}={value}")
        if i >= len(piece):
            return "+".join(sorted(avas))
        if piece[i] != "+":
            raise _NotADn(f"unexpected {piece[i]!r} at {i}")
        i += 1


def _read_type(dn: str, i: int) -> tuple[str, int]:
    end = dn.find("=", i)
    if end < 0:
        raise _NotADn(f"no '=' after {i}")
    attr = dn[i:end].strip().lower()
    if not attr or any(ch in _SPECIAL or ch.isspace() for ch in attr):
        raise _NotADn(f"not an attribute type: {dn[i:end]!r}")
    return attr, end + 1


def _read_value(dn: str, i: int) -> tuple[str, int]:
    """The value starting at ``i`` (after ``=``) in its canonical text (lower-cased, escaped by
    :func:`_escape`), and the index of the separator after it (or the end)."""
    n = len(dn)
    while i < n and dn[i] == " ":
        i += 1
    if i < n and dn[i] == '"':
        # RFC 2253's legacy quoted form: everything up to the closing quote is the value.
        raw, i = _unescape(dn, i + 1, stop='"')
        if i >= n:
            raise _NotADn("unterminated quoted value")
        i += 1
        while i < n and dn[i] == " ":
            i += 1
        if i < n and dn[i] not in "+,;":
            raise _NotADn(f"unexpected {dn[i]!r} after a quoted value")
        return _escape(raw.lower()), i
    if i < n and dn[i] == "#":
        # A BER value in hex (``cn=#04024869``): kept as written, apart from the hex digits' case,
        # so that it stays apart from a string starting with an escaped ``\#``.
        end = i
        while end < n and dn[end] not in "+,;":
            end += 1
        return "#" + dn[i + 1 : end].strip().lower(), end
    value, i = _unescape(dn, i, stop="+,;")
    return _escape(value.lower()), i


def _unescape(dn: str, i: int, stop: str) -> tuple[str, int]:
    """Read up to an unescaped character of ``stop``: ``\\XX`` hex pairs are UTF-8 bytes, ``\\c``
    is ``c``. Unescaped spaces at the end are not part of the value, escaped ones are."""
    out = bytearray()
    keep = 0  # length of ``out`` up to its last escaped or non-space character
    n = len(dn)
    while i < n and dn[i] not in stop:
        ch = dn[i]
        if ch == "\\":
            pair = dn[i + 1 : i + 3]
            if len(pair) == 2 and all(c in hexdigits for c in pair):
                out += bytes.fromhex(pair)
                i += 3
            elif i + 1 < n:
                out += dn[i + 1].encode()
                i += 2
            else:
                raise _NotADn("a DN cannot end with a lone backslash")
            keep = len(out)
            continue
        out += ch.encode()
        if ch != " ":
            keep = len(out)
        i += 1
    return bytes(out[:keep]).decode("utf-8", "replace"), i


def _escape(value: str) -> str:
    """An unescaped string value written one way only, so that equal values give equal text
    (a leading ``#`` escaped: it would read as a BER hex value)."""
    last = len(value) - 1
    return "".join(
        "\\" + ch if ch in _SPECIAL or (k == 0 and ch in " #") or (k == last and ch == " ") else ch
        for k, ch in enumerate(value)
    )
