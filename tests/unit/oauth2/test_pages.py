"""oauth2/pages.py: the resource owner's pages, read back with the standard HTML parser."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from restguard.oauth2.http import EndpointResponse
from restguard.oauth2.pages import (
    consent_page,
    describe_scope,
    error_page,
    login_page,
    message_page,
    page_headers,
    user_code_page,
)

VOID = {"meta", "input", "br", "link", "img", "hr"}
XSS = '"><script>alert(1)</script>'
TRICKY = {"state": "a\"b'c<d>&e f", "redirect_uri": "x&amp;y", "nonce": "élan ✓ 日本"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str | None]
    children: list[Node | str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def walk(self) -> list[Node]:
        out = [self]
        for c in self.children:
            if isinstance(c, Node):
                out += c.walk()
        return out

    def find(self, tag: str, **attrs: str) -> list[Node]:
        return [
            n
            for n in self.walk()
            if n.tag == tag and all(n.attrs.get(k.rstrip("_")) == v for k, v in attrs.items())
        ]


class Tree(HTMLParser):
    """A strict little DOM: every non-void element must be closed by its own end tag."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]
        self.decls: list[str] = []

    def handle_decl(self, decl: str) -> None:
        self.decls.append(decl)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = [k for k, _ in attrs]
        assert len(names) == len(set(names)), f"duplicate attribute on <{tag}>: {names}"
        node = Node(tag, dict(attrs))
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        raise AssertionError(f"self-closing <{tag}/> is not HTML5 style")

    def handle_endtag(self, tag: str) -> None:
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)

    def handle_comment(self, data: str) -> None:
        raise AssertionError("no comments expected")


def parse(response: EndpointResponse) -> Node:
    tree = Tree()
    tree.feed(response.body.decode("utf-8"))
    tree.close()
    assert tree.stack == [tree.root], "unclosed elements"
    assert tree.decls == ["doctype html"]
    return tree.root


def csp(response: EndpointResponse) -> str:
    return dict(response.headers)[b"content-security-policy"].decode()


def pages(**text: str) -> dict[str, EndpointResponse]:
    """Every page, with ``text`` (client, user, error, scope, code, hidden value) interpolated."""
    t = {"client": "Notes App", "user": "alice", "error": "Wrong", "scope": "notes:read"} | text
    hidden = {"csrf": t.get("hidden", "tok"), **TRICKY}
    code = t.get("code", "ABCD-EFGH")
    return {
        "login": login_page(
            client_name=t["client"], hidden=hidden, username=t["user"], error=t["error"]
        ),
        "consent": consent_page(
            client_name=t["client"],
            username=t["user"],
            scopes=[t["scope"], "notes:write"],
            hidden=hidden,
        ),
        "device": user_code_page(hidden=hidden, user_code=code, error=t["error"]),
        "message": message_page(title=t["client"], message=t["user"]),
        "error": error_page(status=400, title=t["error"], message=t["user"]),
    }


def forms(root: Node) -> list[Node]:
    return root.find("form")


def hidden_fields(form: Node) -> dict[str, str | None]:
    return {n.attrs["name"] or "": n.attrs["value"] for n in form.find("input", type="hidden")}


# --- structure ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(pages()))
def test_every_page_is_a_complete_html5_document(name: str) -> None:
    root = parse(pages()[name])
    (html,) = root.find("html")
    assert html.attrs["lang"] == "en"
    assert root.find("meta", charset="utf-8")
    assert root.find("meta", name="viewport")
    (title,) = root.find("title")
    assert "restguard" in title.text()
    assert len(root.find("main")) == 1
    assert len(root.find("h1")) == 1
    assert "restguard" in root.find("main")[0].text()
    assert not root.find("script") and not root.find("link") and not root.find("img")
    for form in forms(root):
        assert form.attrs["method"] == "post" and "novalidate" not in form.attrs


def test_login_form() -> None:
    root = parse(login_page(client_name="Notes App", hidden={"csrf": "t"}, username="bob"))
    (form,) = forms(root)
    assert form.attrs["action"] == "/login"
    assert "Notes App" in root.find("h1")[0].text()
    (user,) = form.find("input", name="username")
    assert user.attrs["type"] == "text" and user.attrs["autocomplete"] == "username"
    assert user.attrs["value"] == "bob"
    assert "autofocus" in user.attrs and "required" in user.attrs
    assert "aria-invalid" not in user.attrs and not root.find("p", role="alert")
    (password,) = form.find("input", name="password")
    assert password.attrs["type"] == "password"
    assert password.attrs["autocomplete"] == "current-password" and "required" in password.attrs
    assert "value" not in password.attrs
    (button,) = form.find("button")
    assert button.text() == "Sign in" and button.attrs["type"] == "submit"
    assert hidden_fields(form) == {"csrf": "t"}
    assert page_labels(form) == {"username": "Username", "password": "Password"}


def test_login_error_is_announced_and_tied_to_the_username() -> None:
    response = login_page(
        client_name="c", hidden={}, error="Wrong username or password", status=401
    )
    assert response.status == 401
    root = parse(response)
    (alert,) = root.find("p", role="alert")
    assert alert.text() == "Wrong username or password"
    (user,) = root.find("input", name="username")
    assert user.attrs["aria-invalid"] == "true"
    assert user.attrs["aria-describedby"] == alert.attrs["id"]
    main = root.find("main")[0].walk()
    assert main.index(alert) < main.index(root.find("form")[0]), "error above the form"


def page_labels(form: Node) -> dict[str, str]:
    """Each visible input's label text, by input name; fails unless every one has a label."""
    labels = {n.attrs["for"]: n.text() for n in form.find("label")}
    out = {}
    for i in form.find("input"):
        if i.attrs["type"] == "hidden":
            continue
        assert i.attrs.get("id") in labels, f"no <label for> for {i.attrs}"
        out[i.attrs["name"] or ""] = labels[i.attrs["id"]]
    return out


@pytest.mark.parametrize("name", ["login", "consent", "device"])
def test_every_visible_input_has_a_label_and_ids_are_unique(name: str) -> None:
    root = parse(pages()[name])
    (form,) = forms(root)
    assert page_labels(form)
    ids = [n.attrs["id"] for n in root.walk() if "id" in n.attrs]
    assert len(ids) == len(set(ids))


def test_consent_form() -> None:
    scopes = ["notes:read", "notes:write", "profile"]
    root = parse(
        consent_page(client_name="Notes App", username="alice", scopes=scopes, hidden={"c": "1"})
    )
    (form,) = forms(root)
    assert form.attrs["action"] == "/consent"
    (legend,) = form.find("legend")
    assert legend.text() == "Notes App would like to:"
    boxes = form.find("input", type="checkbox")
    assert [b.attrs["value"] for b in boxes] == scopes
    assert all(b.attrs["name"] == "scope" and "checked" in b.attrs for b in boxes)
    assert page_labels(form)  # fails unless every checkbox has its <label for>
    by_box = {n.attrs["for"]: n for n in form.find("label")}
    read, write, other = (by_box[b.attrs["id"] or ""] for b in boxes)
    assert "read your notes" in read.text() and read.find("code")[0].text() == "notes:read"
    assert "read and change your notes" in write.text()
    assert "use \u201cprofile\u201d" in other.text()
    assert read.find("span")[0].attrs["class"] != write.find("span")[0].attrs["class"]
    assert "read-only" in read.text() and "can change" in write.text()
    buttons = form.find("button")
    assert [(b.attrs["name"], b.attrs["value"], b.text()) for b in buttons] == [
        ("decision", "allow", "Allow"),
        ("decision", "deny", "Deny"),
    ]
    text = root.find("main")[0].text()
    assert "Signed in as alice" in text and "Untick" in text
    assert hidden_fields(form) == {"c": "1"}


def test_user_code_form() -> None:
    root = parse(user_code_page(hidden={"csrf": "t"}, user_code="WDJB-MJHT"))
    (form,) = forms(root)
    assert form.attrs["action"] == "/device"
    (code,) = form.find("input", name="user_code")
    assert code.attrs["value"] == "WDJB-MJHT"
    assert code.attrs["autocomplete"] == "one-time-code"
    assert code.attrs["autocapitalize"] == "characters"
    assert code.attrs["spellcheck"] == "false" and "autofocus" in code.attrs
    assert page_labels(form) == {"user_code": "Code shown on your device"}
    assert [b.text() for b in form.find("button")] == ["Continue"]
    errored = parse(user_code_page(hidden={}, error="Unknown code", status=400))
    assert errored.find("input", name="user_code")[0].attrs["aria-invalid"] == "true"
    assert errored.find("p", role="alert")[0].text() == "Unknown code"


def test_message_and_error_pages() -> None:
    done = message_page(title="Device connected", message="You may close this window.")
    root = parse(done)
    assert done.status == 200 and not forms(root)
    assert root.find("h1")[0].text() == "Device connected"
    assert "You may close this window." in root.find("main")[0].text()
    bad = error_page(status=400, title="Invalid redirect URI", message="Ask the app's maker.")
    assert bad.status == 400 and not forms(parse(bad))
    with pytest.raises(ValueError):
        error_page(status=302, title="t", message="m")


def test_hidden_fields_round_trip_exactly() -> None:
    for name in ("login", "consent", "device"):
        (form,) = forms(parse(pages()[name]))
        assert hidden_fields(form) == {"csrf": "tok", **TRICKY}


@pytest.mark.parametrize(
    ("page", "field"),
    [
        (lambda h: login_page(client_name="c", hidden=h), "password"),
        (lambda h: consent_page(client_name="c", username="u", scopes=[], hidden=h), "scope"),
        (lambda h: user_code_page(hidden=h), "user_code"),
    ],
)
def test_a_hidden_field_cannot_shadow_the_forms_own(
    page: Callable[[dict[str, str]], EndpointResponse], field: str
) -> None:
    with pytest.raises(ValueError):
        page({field: "x"})


# --- escaping and headers -----------------------------------------------------------------


@pytest.mark.parametrize("where", ["client", "user", "error", "scope", "code", "hidden"])
def test_injected_markup_is_never_reflected(where: str) -> None:
    for name, response in pages(**{where: XSS}).items():
        body = response.body.decode()
        assert "<script" not in body.lower(), name
        assert not parse(response).find("script")


def test_pages_show_injected_text_as_text() -> None:
    root = parse(pages(client=XSS)["consent"])
    assert {n.text() for n in root.find("bdi", class_="client")} == {XSS}
    root = parse(pages(error=XSS)["login"])
    assert root.find("p", role="alert")[0].text() == XSS


@pytest.mark.parametrize("name", list(pages()))
def test_headers_on_every_page(name: str) -> None:
    response = pages()[name]
    headers = dict(response.headers)
    assert len(headers) == len(response.headers)
    assert all(k == k.lower() for k in headers)
    assert headers[b"content-type"] == b"text/html; charset=utf-8"
    assert headers[b"cache-control"] == b"no-store"
    assert headers[b"pragma"] == b"no-cache"
    assert headers[b"x-frame-options"] == b"DENY"
    assert headers[b"x-content-type-options"] == b"nosniff"
    assert headers[b"referrer-policy"] == b"no-referrer"
    assert headers[b"cross-origin-opener-policy"] == b"same-origin"
    policy = dict(d.strip().split(" ", 1) for d in csp(response).split(";"))
    assert policy["default-src"] == "'none'" and policy["form-action"] == "'self'"
    assert policy["frame-ancestors"] == "'none'" and policy["base-uri"] == "'none'"
    assert policy["img-src"] == "'self'" and "script-src" not in policy


@pytest.mark.parametrize("name", list(pages()))
def test_the_style_hash_matches_the_style_element(name: str) -> None:
    response = pages()[name]
    (style,) = parse(response).find("style")
    digest = base64.b64encode(hashlib.sha256(style.text().encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}';" in csp(response)
    assert "url(" not in style.text() and "@import" not in style.text()


@pytest.mark.parametrize("name", list(pages()))
def test_no_url_to_another_origin(name: str) -> None:
    body = pages()[name].body.decode()
    assert not re.search(r"https?://", body) and "//" not in body


@pytest.mark.parametrize(
    "source",
    ["https://app.example:8443", "http://127.0.0.1:9000", "com.example.app:", "http://[::1]:80"],
)
def test_form_sources_accepted(source: str) -> None:
    login = login_page(client_name="c", hidden={}, form_sources=[source])
    consent = consent_page(
        client_name="c", username="u", scopes=[], hidden={}, form_sources=[source]
    )
    twice = dict(page_headers([source, source]))[b"content-security-policy"].decode()
    for policy in (csp(login), csp(consent), twice):
        directives = [d.strip() for d in policy.split(";")]
        assert len(directives) == 6
        assert f"form-action 'self' {source}" in directives


@pytest.mark.parametrize(
    "source",
    [
        "https://a.example; script-src *",
        "'unsafe-inline'",
        "https://a b",
        "https://a.example,https://b.example",
        'https://a.example"',
        "https://a.example\n",
        "https://a.example/",
        "https://*.example",
        "https://a.example:99999",
        "*",
        "'self'",
        "https:",
        "data:",
        "javascript:",
        "",
        "https://ex\u00e4mple.com",
    ],
)
def test_form_sources_refused(source: str) -> None:
    with pytest.raises(ValueError):
        page_headers([source])
    with pytest.raises(ValueError):
        login_page(client_name="c", hidden={}, form_sources=["https://ok.example", source])


def test_form_sources_is_not_one_string() -> None:
    with pytest.raises(TypeError):
        page_headers("https://app.example")


@pytest.mark.parametrize(
    ("scope", "words"),
    [
        ("notes:read", "read your notes"),
        ("notes:write", "read and change your notes"),
        ("notes:delete", "delete your notes"),
        ("notes:admin", "manage your notes fully"),
        ("calendar_events:read", "read your calendar events"),
        ("bank-accounts:write", "read and change your bank accounts"),
        ("openid", "use \u201copenid\u201d"),
        (":read", "use \u201c:read\u201d"),
        ("notes:list", "use \u201cnotes:list\u201d"),
    ],
)
def test_describe_scope(scope: str, words: str) -> None:
    assert describe_scope(scope) == words


# --- property: whatever the text, it comes back as text and adds no markup -----------------


def shape(root: Node) -> list[tuple[str, tuple[str, ...]]]:
    return [(n.tag, tuple(sorted(n.attrs))) for n in root.walk()]


@settings(max_examples=200, deadline=None)
@given(
    client=st.text(),
    user=st.text(),
    error=st.text(min_size=1),
    value=st.text(),
    key=st.text(min_size=1).filter(
        lambda k: k not in {"csrf", "username", "password", "scope", "decision"}
    ),
)
def test_any_text_round_trips(client: str, user: str, error: str, value: str, key: str) -> None:
    hidden = {"csrf": value, key: value}
    login = parse(login_page(client_name=client, hidden=hidden, username=user, error=error))
    consent = parse(
        consent_page(client_name=client, username=user, scopes=["a:read"], hidden=hidden)
    )
    baseline_hidden = {"csrf": "v", "k": "v"}
    assert shape(login) == shape(
        parse(login_page(client_name="c", hidden=baseline_hidden, username="u", error="e"))
    )
    assert shape(consent) == shape(
        parse(
            consent_page(client_name="c", username="u", scopes=["a:read"], hidden=baseline_hidden)
        )
    )
    assert login.find("bdi", class_="client")[0].text() == client
    assert login.find("input", name="username")[0].attrs["value"] == user
    assert login.find("p", role="alert")[0].text() == error
    assert consent.find("bdi", class_="user")[0].text() == user
    assert [n.text() for n in consent.find("bdi", class_="client")] == [client, client]
    for root in (login, consent):
        assert hidden_fields(root.find("form")[0]) == hidden
