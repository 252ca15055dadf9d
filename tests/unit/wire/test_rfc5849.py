"""RFC 5849 (OAuth 1.0) signed requests: the RFC's own examples (§1.2, §3.4.1 with errata EID
2550, §3.6), strict parameter collection, and interop both ways with oauthlib."""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oauthlib.common import Request as PeerRequest
from oauthlib.oauth1 import (
    SIGNATURE_HMAC_SHA1,
    SIGNATURE_HMAC_SHA256,
    SIGNATURE_PLAINTEXT,
    SIGNATURE_RSA_SHA1,
    SIGNATURE_TYPE_AUTH_HEADER,
    SIGNATURE_TYPE_BODY,
    SIGNATURE_TYPE_QUERY,
    Client,
)
from oauthlib.oauth1.rfc5849 import signature as peer

from restguard.wire import rfc5849
from restguard.wire.rfc5849 import (
    OAuthError,
    OAuthParameterError,
    SignatureInvalid,
    UnsupportedSignatureMethod,
    base_string_uri,
    collect,
    normalize_parameters,
    parse_authorization,
    signature_base_string,
)
from restguard.wire.rfc5849_algorithms import sign, sign_request, signer, verify
from restguard.wire.rfc5849_encoding import percent_encode
from restguard.wire.rfc5849_signer import authorization_header

FORM = b"application/x-www-form-urlencoded"


def _collect(
    method: str,
    url: str,
    authorization: str | bytes | None = None,
    body: bytes | None = None,
    form: bool = True,
) -> rfc5849.OAuthRequest:
    parts = urlsplit(url)
    headers = [(b"host", parts.netloc.encode())]
    if authorization is not None:
        value = authorization.encode() if isinstance(authorization, str) else authorization
        headers.append((b"authorization", value))
    return collect(
        method,
        parts.scheme,
        parts.netloc,
        parts.path,
        parts.query.encode(),
        headers,
        body,
        form and body is not None,
    )


# --- §3.6 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "encoded"),
    [
        ("abcXYZ019-._~", "abcXYZ019-._~"),  # unreserved: "MUST NOT be encoded"
        (" ", "%20"),  # not "+" (§3.6's last paragraph)
        ("+", "%2B"),
        ("*", "%2A"),
        ("/?#[]@!$&'()=,;:%", "%2F%3F%23%5B%5D%40%21%24%26%27%28%29%3D%2C%3B%3A%25"),
        ("é", "%C3%A9"),  # UTF-8 first, upper-case hex
        ("€", "%E2%82%AC"),
        ("\U0001f600", "%F0%9F%98%80"),
        ("\x00\x7f", "%00%7F"),
        ("", ""),
    ],
)
def test_percent_encoding_section_3_6(text: str, encoded: str) -> None:
    assert percent_encode(text) == encoded
    assert percent_encode(text.encode()) == encoded


# --- §3.4.1 with errata EID 2550 ------------------------------------------------------------

RFC_BASE_STRING = (
    "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q"
    "%26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_"
    "key%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26oauth_signature_m"
    "ethod%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_token%3Dkkk"
    "9d7dh3k39sjv7"
)
RFC_NORMALIZED = (
    "a2=r%20b&a3=2%20q&a3=a&b5=%3D%253D&c%40=&c2=&oauth_consumer_key=9dj"
    "dj82h48djs9d2&oauth_nonce=7d8f3e4a&oauth_signature_method=HMAC-SHA1"
    "&oauth_timestamp=137131201&oauth_token=kkk9d7dh3k39sjv7"
)
# §3.1 and §3.4.1.1 print "bYT5CMsGcbgUdFHObYMEfcx6bsw%3D"; errata EID 2550 (verified)
# corrects it to the value the printed base string and secrets give.
ERRATA_2550_SIGNATURE = "r6/TJjbCOr97/+UU0NsvSne7s5g="


def _rfc_3_4_1_header(signature: str) -> str:
    return (
        'OAuth realm="Example",\n'.replace("\n", "")
        + ' oauth_consumer_key="9djdj82h48djs9d2",'
        + ' oauth_token="kkk9d7dh3k39sjv7",'
        + ' oauth_signature_method="HMAC-SHA1",'
        + ' oauth_timestamp="137131201",'
        + ' oauth_nonce="7d8f3e4a",'
        + f' oauth_signature="{percent_encode(signature)}"'
    )


def test_section_3_4_1_base_string_and_errata_2550_signature() -> None:
    req = _collect(
        "POST",
        "http://example.com/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b",
        _rfc_3_4_1_header(ERRATA_2550_SIGNATURE),
        b"c2&a3=2+q",
    )
    assert req.normalized_parameters == RFC_NORMALIZED  # §3.4.1.3.2
    assert req.base_string == RFC_BASE_STRING  # §3.4.1.1
    assert req.source == "header" and req.realm == "Example"
    # §3.4.1.3.1's table of decoded parameters (oauth_signature is collected, not signed)
    assert ("b5", "=%3D") in req.params and ("c@", "") in req.params
    assert ("a3", "2 q") in req.params and ("c2", "") in req.params
    verify(
        "HMAC-SHA1",
        req.base_string,
        req.signature,
        consumer_secret="j49sk3j29djd",
        token_secret="dh893hdasih9",
    )
    assert (
        sign(
            "HMAC-SHA1",
            RFC_BASE_STRING,
            consumer_secret="j49sk3j29djd",
            token_secret="dh893hdasih9",
        )
        == ERRATA_2550_SIGNATURE
    )
    # The value printed before the erratum does not verify.
    with pytest.raises(SignatureInvalid):
        verify(
            "HMAC-SHA1",
            req.base_string,
            "bYT5CMsGcbgUdFHObYMEfcx6bsw=",
            consumer_secret="j49sk3j29djd",
            token_secret="dh893hdasih9",
        )


def test_section_3_4_1_2_base_string_uri_examples() -> None:
    assert base_string_uri("http", "EXAMPLE.COM:80", "/r%20v/X") == "http://example.com/r%20v/X"
    assert base_string_uri("https", "www.example.net:8080", "/") == (
        "https://www.example.net:8080/"
    )
    assert base_string_uri("HTTPS", "Example.com:443", "") == "https://example.com/"
    assert base_string_uri("http", "[::1]:8080", "/p") == "http://[::1]:8080/p"
    assert base_string_uri("http", "[::1]:80", "/p") == "http://[::1]/p"
    for bad in ("host:x", "host:123456", ":80", "[::1"):
        with pytest.raises(OAuthParameterError):
            base_string_uri("http", bad, "/")
    with pytest.raises(ValueError):
        base_string_uri("ftp", "host", "/")


def test_normalize_and_signature_base_string_helpers() -> None:
    params = [
        ("b5", "=%3D"),
        ("a3", "a"),
        ("c@", ""),
        ("a2", "r b"),
        ("oauth_consumer_key", "9djdj82h48djs9d2"),
        ("oauth_token", "kkk9d7dh3k39sjv7"),
        ("oauth_signature_method", "HMAC-SHA1"),
        ("oauth_timestamp", "137131201"),
        ("oauth_nonce", "7d8f3e4a"),
        ("c2", ""),
        ("a3", "2 q"),
    ]
    assert normalize_parameters(params) == RFC_NORMALIZED
    assert signature_base_string("post", "http://example.com/request", RFC_NORMALIZED) == (
        RFC_BASE_STRING
    )


def test_sort_is_by_name_then_value_not_by_the_joined_pair() -> None:
    # "a" < "a1" < "a%20b" by byte order of the encoded *name*... but "a=" > "a1=" as strings.
    req = _collect(
        "GET",
        "http://h/?a1=x&a=z&a=y&a%20b=1&a-=2",
        'OAuth oauth_consumer_key="k", oauth_signature_method="HMAC-SHA1", '
        'oauth_signature="s", oauth_timestamp="1", oauth_nonce="n"',
    )
    names = [pair.split("=")[0] for pair in req.normalized_parameters.split("&")]
    assert names[:5] == ["a", "a", "a%20b", "a-", "a1"]
    assert req.normalized_parameters.startswith("a=y&a=z&")
    assert req.normalized_parameters == normalize_parameters(
        [(n, v) for n, v in req.params if n != "oauth_signature"]
    )


# --- §1.2: the three requests of the photo example ------------------------------------------

CLIENT_KEY, CLIENT_SECRET = "dpf43f3p2l4k3l03", "kd94hf93k423kf44"


def _photo_header(**params: str) -> str:
    return 'OAuth realm="Photos", ' + ", ".join(f'{k}="{v}"' for k, v in params.items())


@pytest.mark.parametrize(
    ("method", "url", "params", "token_secret"),
    [
        pytest.param(
            "POST",
            "https://photos.example.net/initiate",
            {
                "oauth_consumer_key": CLIENT_KEY,
                "oauth_signature_method": "HMAC-SHA1",
                "oauth_timestamp": "137131200",
                "oauth_nonce": "wIjqoS",
                "oauth_callback": "http%3A%2F%2Fprinter.example.com%2Fready",
                "oauth_signature": "74KNZJeDHnMBp0EMJ9ZHt%2FXKycU%3D",
            },
            "",
            id="temporary-credentials",
        ),
        pytest.param(
            "POST",
            "https://photos.example.net/token",
            {
                "oauth_consumer_key": CLIENT_KEY,
                "oauth_token": "hh5s93j4hdidpola",
                "oauth_signature_method": "HMAC-SHA1",
                "oauth_timestamp": "137131201",
                "oauth_nonce": "walatlh",
                "oauth_verifier": "hfdp7dh39dks9884",
                "oauth_signature": "gKgrFCywp7rO0OXSjdot%2FIHF7IU%3D",
            },
            "hdhd0244k9j7ao03",
            id="token-credentials",
        ),
        pytest.param(
            # The protected resource request is plain HTTP: its signature only verifies
            # with "http://photos.example.net/photos" as the base string URI.
            "GET",
            "http://photos.example.net/photos?file=vacation.jpg&size=original",
            {
                "oauth_consumer_key": CLIENT_KEY,
                "oauth_token": "nnch734d00sl2jdk",
                "oauth_signature_method": "HMAC-SHA1",
                "oauth_timestamp": "137131202",
                "oauth_nonce": "chapoH",
                "oauth_signature": "MdpQcU8iPSUjWoN%2FUDMsK2sui9I%3D",
            },
            "pfkkdhi9sl3r4s00",
            id="protected-resource",
        ),
    ],
)
def test_section_1_2_example_signatures(
    method: str, url: str, params: dict[str, str], token_secret: str
) -> None:
    req = _collect(method, url, _photo_header(**params))
    assert req.consumer_key == CLIENT_KEY and req.realm == "Photos"
    verify(
        "HMAC-SHA1",
        req.base_string,
        req.signature,
        consumer_secret=CLIENT_SECRET,
        token_secret=token_secret,
    )
    with pytest.raises(SignatureInvalid):  # the wrong token secret
        verify(
            "HMAC-SHA1",
            req.base_string,
            req.signature,
            consumer_secret=CLIENT_SECRET,
            token_secret=token_secret + "x",
        )
    if "oauth_callback" in params:
        assert req.protocol["oauth_callback"] == "http://printer.example.com/ready"


def test_section_2_1_plaintext_example() -> None:
    value = (
        'OAuth realm="Example", oauth_consumer_key="jd83jd92dhsh93js", '
        'oauth_signature_method="PLAINTEXT", oauth_timestamp="137131200", oauth_nonce="n", '
        'oauth_callback="http%3A%2F%2Fclient.example.net%2Fcb%3Fx%3D1", '
        'oauth_signature="ja893SD9%26"'
    )
    req = _collect("POST", "https://server.example.com/request_temp_credentials", value)
    verify("PLAINTEXT", req.base_string, req.signature, consumer_secret="ja893SD9")
    with pytest.raises(SignatureInvalid):
        verify("PLAINTEXT", req.base_string, req.signature, consumer_secret="ja893SD8")


# --- strict collection ------------------------------------------------------------------------

GOOD = {
    "oauth_consumer_key": "key",
    "oauth_signature_method": "HMAC-SHA1",
    "oauth_timestamp": "137131200",
    "oauth_nonce": "abc",
    "oauth_signature": "c2ln",
}


def _header(**over: str | None) -> str:
    params = {**GOOD, **over}
    return "OAuth " + ", ".join(f'{k}="{v}"' for k, v in params.items() if v is not None)


def test_a_good_header_collects() -> None:
    req = _collect("get", "http://h/p", _header())
    assert req.method == "GET" and req.token is None and req.timestamp == 137131200
    assert req.protocol == GOOD and req.realm is None


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(_header() + ', oauth_nonce="abc"', id="duplicate"),
        pytest.param(_header() + ', oauth_nonce="other"', id="duplicate-different-value"),
        pytest.param(_header() + ', oauth%5Fnonce="other"', id="duplicate-encoded-name"),
        pytest.param(_header() + ', x="1", x="2"', id="duplicate-other-param"),
        pytest.param('OAuth realm="a", realm="b", ' + _header()[6:], id="duplicate-realm"),
        pytest.param(_header().replace('"abc"', "abc"), id="missing-quotes"),
        pytest.param(_header().replace('"abc"', '"abc'), id="missing-closing-quote"),
        pytest.param(_header().replace('="abc"', "='abc'"), id="single-quotes"),
        pytest.param(_header().replace('oauth_nonce="', 'oauth_nonce = "'), id="space-around-eq"),
        pytest.param(_header().replace('"abc"', '"a%zzc"'), id="bad-percent-escape"),
        pytest.param(_header().replace('"abc"', '"a%4"'), id="truncated-percent-escape"),
        pytest.param(_header().replace('"abc"', '"a b"'), id="unencoded-space"),
        pytest.param(_header().replace('"abc"', '"a/b"'), id="unencoded-slash"),
        pytest.param(_header().replace('"abc"', '"a+b"'), id="unencoded-plus"),
        pytest.param(_header().replace('"abc"', '"a\\"b"'), id="quoted-pair-in-oauth-param"),
        pytest.param(_header().replace('"abc"', '"%FF"'), id="not-utf8"),
        pytest.param(_header() + ",", id="trailing-comma"),
        pytest.param(_header().replace(", ", ",, "), id="empty-list-element"),
        pytest.param(_header().replace(", ", " "), id="no-comma"),
        pytest.param(_header().replace(", ", ";"), id="semicolon"),
        pytest.param(_header().replace("OAuth ", "OAuth,"), id="no-space-after-scheme"),
        pytest.param(_header().replace("OAuth ", "OAuth\t"), id="tab-after-scheme"),
        pytest.param("OAuth", id="no-params"),
        pytest.param("OAuth    ", id="blank-params"),
        pytest.param(_header(oauth_timestamp="١٢٣"), id="timestamp-arabic-indic-digits"),
        pytest.param(_header(oauth_timestamp="%D9%A1%D9%A2%D9%A3"), id="timestamp-encoded-arabic"),
        pytest.param(_header(oauth_timestamp="%2B123"), id="timestamp-plus"),
        pytest.param(_header(oauth_timestamp="%20123"), id="timestamp-leading-space"),
        pytest.param(_header(oauth_timestamp="123%20"), id="timestamp-trailing-space"),
        pytest.param(_header(oauth_timestamp="-1"), id="timestamp-negative"),
        pytest.param(_header(oauth_timestamp="0"), id="timestamp-zero"),
        pytest.param(_header(oauth_timestamp="0123"), id="timestamp-leading-zero"),
        pytest.param(_header(oauth_timestamp="1.5"), id="timestamp-fraction"),
        pytest.param(_header(oauth_timestamp="1" * 20), id="timestamp-too-long"),
        pytest.param(_header(oauth_timestamp="%C2%B2"), id="timestamp-superscript-two"),
        pytest.param(_header(oauth_timestamp=None), id="missing-timestamp"),
        pytest.param(_header(oauth_nonce=None), id="missing-nonce"),
        pytest.param(_header(oauth_nonce=""), id="empty-nonce"),
        pytest.param(_header(oauth_nonce="n" * 256), id="nonce-too-long"),
        pytest.param(_header(oauth_consumer_key=None), id="missing-consumer-key"),
        pytest.param(_header(oauth_signature=None), id="missing-signature"),
        pytest.param(_header(oauth_signature=""), id="empty-signature"),
        pytest.param(_header(oauth_signature_method=None), id="missing-method"),
        pytest.param(_header(oauth_version="1.0a"), id="version-1.0a"),
        pytest.param(_header(oauth_version="2.0"), id="version-2.0"),
        pytest.param(_header() + ', realm="' + "x" * 9000 + '"', id="oversized"),
    ],
)
def test_strict_header_refusals(value: str) -> None:
    with pytest.raises(OAuthParameterError):
        _collect("GET", "http://h/p", value)


def test_unknown_signature_method_is_its_own_400() -> None:
    with pytest.raises(UnsupportedSignatureMethod):
        _collect("GET", "http://h/p", _header(oauth_signature_method="HMAC-MD5"))
    with pytest.raises(UnsupportedSignatureMethod):
        verify("RSA-SHA256", "b", "s", consumer_secret="x")


def test_header_leniencies_that_are_still_one_reading() -> None:
    # optional white space around commas (§3.5.1 step 3), case-insensitive scheme, tabs,
    # lower-case hex and escaped unreserved characters (normalised in the base string),
    # realm with quoted-pairs, an empty value (§3.5.1 step 2: "MAY be empty").
    value = (
        'oauth  realm="a \\"b\\" c",oauth_consumer_key="k%7e%2f"\t,\t oauth_signature_method='
        '"HMAC-SHA1" ,oauth_signature="s",oauth_timestamp="1",oauth_nonce="n",x=""'
    )
    req = _collect("GET", "http://h/p", value)
    assert req.realm == 'a "b" c'
    assert req.consumer_key == "k~/"
    assert "oauth_consumer_key=k~%2F" in req.normalized_parameters
    assert "x=" in req.normalized_parameters.split("&")


def test_oauth_params_in_two_places_are_refused() -> None:
    with pytest.raises(OAuthParameterError, match="header and the query"):
        _collect("GET", "http://h/p?oauth_token=t", _header())
    with pytest.raises(OAuthParameterError, match="header and the body"):
        _collect("POST", "http://h/p", _header(), b"oauth_token=t")
    body = "&".join(f"{k}={v}" for k, v in GOOD.items()).encode()
    with pytest.raises(OAuthParameterError, match="body and the query"):
        _collect("POST", "http://h/p?oauth_version=1.0", None, body)
    # an encoded name is the same name (§3.5 counts any "oauth_" parameter)
    with pytest.raises(OAuthParameterError):
        _collect("GET", "http://h/p?oauth%5Fextra=1", _header())
    # a non-form body is not a parameter source: its bytes are never read as parameters
    req = _collect("POST", "http://h/p", _header(), b"oauth_token=t", form=False)
    assert req.token is None and req.source == "header"


def test_repeated_oauth_params_in_query_or_body_are_refused() -> None:
    query = "&".join(f"{k}={v}" for k, v in GOOD.items())
    with pytest.raises(OAuthParameterError, match="repeated"):
        _collect("GET", f"http://h/p?{query}&oauth_nonce=abc")
    with pytest.raises(OAuthParameterError, match="repeated"):
        _collect("POST", "http://h/p", None, f"{query}&oauth_nonce=x".encode())
    with pytest.raises(OAuthParameterError, match="percent"):
        _collect("GET", f"http://h/p?{query}&q=100%")
    with pytest.raises(OAuthParameterError, match="more than one"):
        collect(
            "GET",
            "http",
            "h",
            "/",
            b"",
            [(b"authorization", _header().encode()), (b"authorization", _header().encode())],
            None,
            False,
        )
    with pytest.raises(OAuthParameterError, match="no OAuth"):
        collect("GET", "http", "h", "/", b"", [(b"authorization", b"Basic eDp5")], None, False)


def test_query_and_body_forms_collect() -> None:
    query = "&".join(f"{k}={v}" for k, v in GOOD.items())
    req = _collect("GET", f"http://h/p?x=1&{query}")
    assert req.source == "query" and req.protocol == GOOD
    req = _collect("POST", "http://h/p?x=1", None, f"y=2&{query}".encode())
    assert req.source == "body" and ("y", "2") in req.params and ("x", "1") in req.params


def test_parse_authorization_other_schemes() -> None:
    assert parse_authorization(b"Bearer abc") is None
    assert parse_authorization(b"OAuthX a=1") is None
    realm, params = parse_authorization(b'OAuth realm="r", oauth_nonce="a%20b"') or (None, [])
    assert realm == "r" and params[0] == ("oauth_nonce", "a b", "oauth_nonce\0a%20b", True)


def test_authorization_header_round_trip_and_realm_escaping() -> None:
    value = authorization_header([("oauth_nonce", "a b/é")], realm='r"\\')
    assert value == 'OAuth realm="r\\"\\\\", oauth_nonce="a%20b%2F%C3%A9"'
    realm, params = parse_authorization(value.encode()) or (None, [])
    assert realm == 'r"\\' and params[0][1] == "a b/é"
    with pytest.raises(ValueError):
        authorization_header([], realm="a\nb")


def test_verify_refuses_bad_signature_encodings_and_missing_keys() -> None:
    base = "GET&http%3A%2F%2Fh%2F&"
    good = sign("HMAC-SHA256", base, consumer_secret="cs", token_secret="ts")
    verify("HMAC-SHA256", base, good, consumer_secret="cs", token_secret="ts")
    for bad in (good[:-1], good + "=", "é" + good, good.replace("=", ""), ""):
        with pytest.raises(SignatureInvalid):
            verify("HMAC-SHA256", base, bad, consumer_secret="cs", token_secret="ts")
    with pytest.raises(SignatureInvalid):  # a SHA-1 MAC is not a SHA-256 one
        verify(
            "HMAC-SHA256",
            base,
            sign("HMAC-SHA1", base, consumer_secret="cs", token_secret="ts"),
            consumer_secret="cs",
            token_secret="ts",
        )
    with pytest.raises(ValueError):
        verify("HMAC-SHA1", base, good, consumer_secret="")
    with pytest.raises(ValueError):
        verify("RSA-SHA1", base, good)
    with pytest.raises(ValueError):
        signer("RSA-SHA1", consumer_secret="cs")


# --- interop with oauthlib ---------------------------------------------------------------------

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PEM = RSA_KEY.private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.TraditionalOpenSSL,
    serialization.NoEncryption(),
).decode()
RSA_PUBLIC_PEM = (
    RSA_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
METHODS = [SIGNATURE_HMAC_SHA1, SIGNATURE_HMAC_SHA256, SIGNATURE_RSA_SHA1, SIGNATURE_PLAINTEXT]
PLACES = [SIGNATURE_TYPE_AUTH_HEADER, SIGNATURE_TYPE_BODY, SIGNATURE_TYPE_QUERY]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("token", [True, False], ids=["three-legged", "two-legged"])
def test_oauthlib_client_signs_and_restguard_verifies(method: str, place: str, token: bool) -> None:
    client = Client(
        "consumer-key",
        client_secret="consumer sécret&",
        resource_owner_key="token-key" if token else None,
        resource_owner_secret="token/secret" if token else None,
        signature_method=method,
        signature_type=place,
        rsa_key=RSA_PEM if method == SIGNATURE_RSA_SHA1 else None,
        realm="Photos",
    )
    url = "https://API.example.com:443/v1/r%20v/items?b5=%3D%253D&a3=a&c%40=&a2=r%20b&e=%C3%A9"
    body = urlencode([("c2", ""), ("a3", "2 q"), ("note", "héllo wörld+&=~*")])
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    uri, signed_headers, signed_body = client.sign(url, "POST", body, headers)
    parts = urlsplit(uri)
    raw_headers = [(k.lower().encode(), v.encode()) for k, v in signed_headers.items()]
    req = collect(
        "POST",
        parts.scheme,
        parts.netloc,
        parts.path,
        parts.query.encode(),
        raw_headers,
        signed_body.encode() if isinstance(signed_body, str) else signed_body,
        True,
    )
    assert req.source == {"AUTH_HEADER": "header", "BODY": "body", "QUERY": "query"}[place]
    assert req.token == ("token-key" if token else None)
    assert req.base_uri == "https://api.example.com/v1/r%20v/items"
    public = RSA_KEY.public_key() if method == SIGNATURE_RSA_SHA1 else None
    secrets = {
        "consumer_secret": "consumer sécret&",
        "token_secret": "token/secret" if token else "",
    }
    verify(req.signature_method, req.base_string, req.signature, rsa_public_key=public, **secrets)
    with pytest.raises(SignatureInvalid):
        if method == SIGNATURE_RSA_SHA1:
            other = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
            verify(req.signature_method, req.base_string, req.signature, rsa_public_key=other)
        else:
            verify(
                req.signature_method,
                req.base_string,
                req.signature,
                consumer_secret="consumer sécret&",
                token_secret="wrong",
            )


def _peer_request(
    method: str, url: str, authorization: str, body: str | None = None
) -> PeerRequest:
    """An oauthlib Request prepared as its endpoints prepare one for the verify functions."""
    headers = {"Authorization": authorization}
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    request = PeerRequest(url, method, body or "", headers)
    params = peer.collect_parameters(
        uri_query=urlsplit(url).query, body=body or "", headers=headers
    )
    request.params = params
    oauth = dict(peer.collect_parameters(headers=headers, exclude_oauth_signature=False))
    request.signature = oauth["oauth_signature"]
    return request


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("token", [True, False], ids=["three-legged", "two-legged"])
def test_restguard_signs_and_oauthlib_verifies(method: str, token: bool) -> None:
    url = "https://api.example.com/v1/items?q=a%20b&e=%C3%A9&plus=1%2B1"
    body = "c2=&a3=2+q&note=h%C3%A9llo"
    value = sign_request(
        "POST",
        "https",
        "api.example.com",
        "/v1/items",
        b"q=a%20b&e=%C3%A9&plus=1%2B1",
        body.encode(),
        consumer_key="consumer-key",
        signature_method=method,
        nonce="nonce-4572616e48616d",
        timestamp=1_700_000_000,
        consumer_secret="consumer sécret&",
        token="token-key" if token else None,
        token_secret="token/secret" if token else None,
        rsa_private_key=RSA_KEY if method == SIGNATURE_RSA_SHA1 else None,
        realm="Photos",
        callback="https://client.example.net/cb?x=1",
    )
    assert value.startswith('OAuth realm="Photos", oauth_consumer_key="consumer-key"')
    request = _peer_request("POST", url, value, body)
    token_secret = "token/secret" if token else None
    if method == SIGNATURE_HMAC_SHA1:
        assert peer.verify_hmac_sha1(request, "consumer sécret&", token_secret)
        assert not peer.verify_hmac_sha1(request, "consumer sécret&", "other")
    elif method == SIGNATURE_HMAC_SHA256:
        assert peer.verify_hmac_sha256(request, "consumer sécret&", token_secret)
    elif method == SIGNATURE_RSA_SHA1:
        assert peer.verify_rsa_sha1(request, RSA_PUBLIC_PEM)
    else:
        assert peer.verify_plaintext(request, "consumer sécret&", token_secret)
    # and restguard collects and verifies its own header
    req = _collect("POST", url, value, body.encode())
    verify(
        method,
        req.base_string,
        req.signature,
        consumer_secret="consumer sécret&",
        token_secret=token_secret,
        rsa_public_key=RSA_KEY.public_key(),
    )


# --- property: mutations of a valid header raise only this module's errors --------------------

VALID = _rfc_3_4_1_header(ERRATA_2550_SIGNATURE).encode()
ALPHABET = b' \t,="\\%+/;:abcOAUTHoauth_0123456789\x00\x7f\x80\xff\xd9\xa1'


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    value = bytearray(VALID)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["insert", "delete", "replace", "duplicate"]))
        at = draw(st.integers(0, len(value)))
        if op == "insert":
            value[at:at] = draw(st.binary(min_size=1, max_size=4)) or b" "
        elif op == "replace" and at < len(value):
            value[at] = draw(st.sampled_from(ALPHABET))
        elif op == "delete" and at < len(value):
            del value[at : at + draw(st.integers(1, 8))]
        elif op == "duplicate":
            end = draw(st.integers(at, min(len(value), at + 40)))
            value[at:at] = value[at:end]
    return bytes(value)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated())
def test_mutated_headers_never_crash(value: bytes) -> None:
    try:
        req = collect(
            "POST",
            "http",
            "example.com",
            "/request",
            b"b5=%3D%253D&a3=a&c%40=&a2=r%20b",
            [(b"authorization", value)],
            b"c2&a3=2+q",
            True,
        )
    except OAuthError:
        return
    try:
        verify(
            req.signature_method,
            req.base_string,
            req.signature,
            consumer_secret="j49sk3j29djd",
            token_secret="dh893hdasih9",
            rsa_public_key=RSA_KEY.public_key(),
        )
    except OAuthError:
        return


# --- values no store keeps, and a second credential field -----------------------------------

_PROTOCOL = [
    ("oauth_consumer_key", "ck"),
    ("oauth_token", "tok"),
    ("oauth_signature_method", "HMAC-SHA1"),
    ("oauth_signature", "c2ln"),
    ("oauth_timestamp", "1700000000"),
    ("oauth_nonce", "n0nce"),
]


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    index=st.integers(0, len(_PROTOCOL) - 1),
    control=st.sampled_from([*map(chr, range(0x20)), "\x7f"]),
    where=st.sampled_from(["header", "query", "body"]),
)
def test_a_control_character_in_any_protocol_value_is_refused(
    index: int, control: str, where: str
) -> None:
    # (a NUL reached the PostgreSQL driver as a token or a nonce: 503, not a refusal)
    params = list(_PROTOCOL)
    name, value = params[index]
    params[index] = (name, value[:1] + control + value[1:])
    url, body, header = "https://api.example.com/r", None, None
    if where == "header":
        header = authorization_header(params)
    elif where == "query":
        url += "?" + urlencode(params)
    else:
        body = urlencode(params).encode()
    with pytest.raises(OAuthParameterError):
        _collect("POST", url, header, body)
    # the twin: without it, the same request collects
    params[index] = (name, value)
    _collect("POST", "https://api.example.com/r", authorization_header(params))


@pytest.mark.parametrize("other", [b"Bearer rg_ak_x", b"Basic YTpi", b"Token x"])
@pytest.mark.parametrize("first", [True, False])
def test_an_oauth_header_next_to_another_authorization_field_is_refused(
    other: bytes, first: bool
) -> None:
    value = authorization_header(_PROTOCOL).encode()
    fields = [(b"authorization", value), (b"authorization", other)]
    with pytest.raises(OAuthParameterError, match="next to another"):
        collect("GET", "https", "h", "/", b"", fields if first else fields[::-1], None, False)
    collect("GET", "https", "h", "/", b"", fields[:1], None, False)
