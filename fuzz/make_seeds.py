#!/usr/bin/env python3
"""Write the seed inputs of the fuzz targets into fuzz/corpus/<target>/seed-*.

Seeds come from fixtures/cpm (CPIM, IMDN and call-log deposits), the examples of the
specifications in /work/shared/reference (search bodies, Appendix C and H), the TOML
examples of docs/security.md, and a few hand-written edge cases. Run from the repository
root; it only adds or rewrites `seed-*` files (what fuzzing adds stays).
"""

import base64
import hashlib
import hmac
import json
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures" / "cpm"
CORPUS = ROOT / "fuzz" / "corpus"


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / f"seed-{name}").write_bytes(data)


def fixture(name):
    return (FIXTURES / name).read_bytes()


# ---------------------------------------------------------------- CPIM
APPENDIX_C = (
    "From: MR SANDERS <im:piglet@100akerwood.com>\r\n"
    "To: Dopey Donkey <im:eeyore@100akerwood.com>\r\n"
    "DateTime: 2014-12-13T13:40:00-08:00\r\n"
    "Subject: the weather will be fine today\r\n"
    "Subject:;lang=fr beau temps prevu pour aujourd'hui\r\n"
    "NS: MyFeatures <mid:MessageFeatures@id.foo.com>\r\n"
    "Require: MyFeatures.VitalMessageOption\r\n"
    "MyFeatures.VitalMessageOption: Confirmation-requested\r\n"
    "MyFeatures.WackyMessageOption: Use-silly-font\r\n"
    "\r\n"
    "Content-Type: multipart/mixed; boundary=7fekyzC-uQhXhZCGky5kU7wP\r\n"
    "\r\n"
    "--7fekyzC-uQhXhZCGky5kU7wP\r\n"
)
for name in ["cpim-chat-image", "cpim-group-chat", "imdn-delivered", "imdn-displayed"]:
    write("cpim", name, fixture(f"{name}.payload"))
write("cpim", "appendix-c", APPENDIX_C)
write(
    "cpim",
    "lf-lines",
    "From: <sip:anonymous@anonymous.invalid>\nTo: <tel:+12125551212>\nTo: <tel:+13105550000>\n"
    "NS: n <urn:ietf:params:imdn>\nn.Message-ID: Ax7l\n\nContent-Type: text/plain;charset=UTF-8\n"
    "Conversation-ID: c-1\nContribution-ID: s-1\nP-Asserted-Service: urn:urn-7:3gpp-service.ims.icsi.oma.cpm.session\n\nhello",
)
write(
    "cpim",
    "quoted-params",
    'From: <tel:+1>\r\n\r\nContent-Type: multipart/related; start="<a;b>"; boundary="--=-sep-=--"; type="text/plain"\r\n\r\n',
)

# ---------------------------------------------------------------- IMDN
def imdn_body(payload):
    text = payload.decode()
    return text[text.index("<?xml") :]


IMDN_NS = "urn:ietf:params:xml:ns:imdn"
for name in ["imdn-delivered", "imdn-displayed"]:
    write("imdn", name, imdn_body(fixture(f"{name}.payload")))


def imdn(notification, root='<imdn xmlns="%s">' % IMDN_NS, end="</imdn>", extra=""):
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n{root}\n<message-id>34jk324j</message-id>\n'
        f"<datetime>2008-04-04T12:16:49-05:00</datetime>\n<recipient-uri>im:bob@example.com</recipient-uri>\n"
        f"{extra}{notification}\n{end}"
    )


write("imdn", "rfc5438-delivery", imdn("<delivery-notification><status><delivered/></status></delivery-notification>"))
write("imdn", "processing", imdn("<processing-notification><status><stored/></status></processing-notification>"))
write(
    "imdn",
    "prefixed",
    imdn(
        "<i:display-notification><i:status><i:displayed/></i:status></i:display-notification>",
        root=f'<i:imdn xmlns:i="{IMDN_NS}">',
        end="</i:imdn>",
    ).replace("<message-id>", "<i:message-id>").replace("</message-id>", "</i:message-id>"),
)
write(
    "imdn",
    "extensions",
    '<imdn><message-id>a&amp;b&#x41;<![CDATA[<c>]]></message-id><!-- c -->'
    '<x:extra xmlns:x="urn:example:ext"><x:message-id>not me</x:message-id></x:extra>'
    '<original-recipient-uri>tel:+1</original-recipient-uri>'
    '<delivery-notification><status><failed/><reason code="503">busy</reason></status></delivery-notification></imdn>',
)

# ---------------------------------------------------------------- call log
APPENDIX_H = {
    "object": {
        "parentFolder": "http://server/nms/v1/base/tel:+12021308085/folders/UGZa5FY4o1S1oTSQSQC",
        "attributes": {
            "attribute": [
                {"name": "From", "value": ["+1818118181"]},
                {"name": "Date", "value": ["2018-09-14T16:39:57-05:00"]},
                {"name": "To", "value": ["+15195551212"]},
                {"name": "Direction", "value": ["In"]},
                {"name": "Message-Context", "value": ["group-state-message"]},
                {"name": "Verified-From-Status", "value": ["TN-Validation-Passed"]},
                {"name": "Call-Type", "value": ["voice"]},
                {"name": "Call-subtype", "value": ["VoLTE"]},
                {"name": "Device-Name", "value": ["Cristina\u2019s iPhone"]},
                {"name": "Call-Disposition", "value": ["ANSWERED"]},
                {"name": "Call-Duration", "value": ["300"]},
                {"name": "Subject", "value": ["OMA Specifications Meeting"]},
                {"name": "Priority", "value": ["Urgent"]},
                {"name": "Call-Info", "value": ["<http://server.com/myIcon.jpeg>;purpose=icon"]},
                {"name": "Geo-Location", "value": ["cid:foo1@bar.net"]},
            ]
        },
    }
}
write("calllog", "appendix-h", json.dumps(APPENDIX_H, indent=1, ensure_ascii=False) + "\0foo1@bar.net")
ids = re.findall(rb"Content-ID: (\S+)", fixture("call-log-geolocation.payload"))
write("calllog", "geolocation", fixture("call-log-geolocation.root-fields.json") + b"\0" + b"\n".join(ids))
outgoing = json.loads(json.dumps(APPENDIX_H))
attrs = outgoing["object"]["attributes"]["attribute"]
for a in attrs:
    if a["name"] == "Direction":
        a["value"] = "Out"
    if a["name"] == "Call-Disposition":
        a["value"] = ["OUTGOING_UNANSWERED"]
    if a["name"] == "From":
        a["value"] = ["sip:anonymous@anonymous.invalid"]
attrs.append({"name": "Enriched-Content", "value": ["multipart/related; type=\"text/plain\""]})
attrs.append({"name": "Cc", "value": ["tel:+1", "tel:+2"]})
write("calllog", "outgoing", json.dumps(outgoing) + "\0<foo1@bar.net>\nicon@x")

# ---------------------------------------------------------------- search
def selection(**kw):
    return json.dumps({"selectionCriteria": kw}, indent=1)


attr = lambda n, v: {"type": "Attribute", "name": n, "value": v}
write(
    "search",
    "spec-6-7-sms",
    selection(
        maxEntries=3,
        searchCriteria={
            "criterion": [
                attr("Message-Context", "pager-message"),
                attr("Direction", "In"),
                attr("From", "tel:+19585550100"),
                {"type": "Date", "value": "minDate=2013-11-11T09:30:10Z"},
            ],
            "operator": "And",
        },
        sortCriterion={"type": "Date", "order": "Ascending"},
    ),
)
write(
    "search",
    "spec-from-cursor",
    selection(fromCursor="cursor111", maxEntries=3, searchCriteria={"criterion": [attr("Direction", "In")]}),
)
write("search", "spec-all-text", selection(maxEntries=3, searchCriteria={"criterion": [{"type": "AllTextAttributes", "value": "Football"}]}))
write("search", "spec-root", selection(maxEntries=3, searchCriteria={"criterion": [attr("root", "Yes")]}))
write(
    "search",
    "spec-scope",
    selection(
        maxEntries=10,
        searchCriteria={"criterion": [{"type": "Date", "value": "minDate=2013-12-01T08:00:00Z&maxDate=2030-01-01T12:00:00Z"}]},
        searchScope={"resourceURL": "@root@", "path": "/"},
        sortCriterion={"type": "Date", "order": "Ascending"},
    ),
)
write("search", "spec-name", selection(maxEntries=10, searchCriteria={"criterion": [attr("Name", "projects")]}))
write("search", "spec-qos", selection(maxEntries=10, searchCriteria={"criterion": [{"type": "AllTextAttributes", "value": "QoS"}]}))
write(
    "search",
    "nested-groups",
    selection(
        maxEntries="1",
        nonRecursiveScope="false",
        searchScope={"resourceURL": "@folder@"},
        searchCriteria={
            "operator": "Or",
            "criterion": [
                {"searchCriteria": {"operator": "Not", "criterion": [{"type": "Flag", "name": "\\Seen", "value": "true"}]}},
                {"type": "WholeWord", "value": "football"},
                {"type": "PresetSearch", "name": "RemoteParty", "value": "tel:+13105550000"},
            ],
        },
        sortCriteria={"criterion": [{"type": "Attribute", "name": "Subject", "order": "Descending"}]},
    ),
)
write("search", "created", selection(maxEntries=1, searchCriteria={"criterion": [{"type": "CreatedObjects"}, attr("Subject", "a note")]}))
write("search", "vanished", selection(maxEntries=5, searchCriteria={"criterion": {"type": "VanishedObjects"}}))
write("search", "page-of-one", selection(maxEntries=1, sortCriterion={"type": "Attribute", "name": "Date"}))

# ---------------------------------------------------------------- cursors
# First byte: kind (0 restart, 1-3 folder listing, 4 creation, 5+ search) + 8 * mode
# (0 token text, 1 sealed payload, 2 sealed value).
for kind in range(6):
    write("cursor", f"kind{kind}-text", bytes([kind]) + b"v1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    write("cursor", f"kind{kind}-payload", bytes([kind + 8]) + bytes(8) + b"i" + bytes(7) + b"\x01")
    write("cursor", f"kind{kind}-value", bytes([kind + 16]) + bytes(range(1, 26)))
write("cursor", "restart-within", bytes([8]) + bytes(16) + b"\x02" + bytes(8))
write("cursor", "search-text", bytes([13]) + bytes(8) + b"t" + "Zoë".encode())

# ---------------------------------------------------------------- Digest
RFC7616 = (
    'username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", algorithm=SHA-256, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, '
    'cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, '
    'response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)
write("digest", "rfc7616", RFC7616)
write(
    "digest",
    "issued-nonce",
    'username="alice", realm="cpm-nms", uri="/nms/v1/base/tel%3A%2B1/objects", algorithm=MD5, nonce="@nonce@", '
    'nc=0000000a, cnonce="c1", qop=auth, response="0123", opaque="@opaque@"',
)
write("digest", "ext-username", "username*=UTF-8''J%C3%A4s%C3%B8n, nonce=\"n\", uri=\"/\", response=\"r\", userhash=TRUE")
write("digest", "escapes", 'username="a\\"b\\\\", realm="", nonce=@nonce@, uri="http://h:1/a?b=c", response=""')

# ---------------------------------------------------------------- Bearer
SECRET = b"0123456789abcdef0123456789abcdef"
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt(header, claims, alg="sha256"):
    signing = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    sig = hmac.new(SECRET, signing.encode(), getattr(hashlib, alg)).digest()
    return f"{signing}.{b64(sig)}"


FAR = 4102444800  # 2100-01-01
CLAIMS = {
    "iss": "https://idp.test",
    "aud": ["x", "nms"],
    "exp": FAR,
    "iat": 1700000000,
    "sub": "tel:+1-212-555-1212",
    "phone_number": "+1 212 555 1212",
    "phone_number_verified": True,
    "scope": "openid oma_rest_nms.read oma_rest_nms.create",
}
write("bearer", "raw-hs256", b"\0" + jwt({"alg": "HS256", "typ": "JWT"}, CLAIMS).encode())
write("bearer", "raw-hs512", b"\0" + jwt({"alg": "HS512"}, dict(CLAIMS, aud="nms"), "sha512").encode())
def unsigned(header, claims, signature):
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}.{b64(signature)}".encode()


write("bearer", "raw-es256", b"\0" + unsigned({"alg": "ES256", "kid": "ec-1"}, CLAIMS, bytes(64)))
write("bearer", "raw-eddsa", b"\0" + unsigned({"alg": "EdDSA"}, CLAIMS, bytes(64)))
write("bearer", "raw-none", b"\0" + unsigned({"alg": "none"}, CLAIMS, b""))
write("bearer", "raw-jwe", b"\0a.b.c.d.e")
signed = lambda header, claims: b"\1" + json.dumps(header).encode() + b"\0" + json.dumps(claims).encode()
write("bearer", "signed-subscriber", signed({"alg": "HS256", "typ": "JWT"}, CLAIMS))
write(
    "bearer",
    "signed-service",
    signed(
        {"alg": "HS384", "kid": "k"},
        {"iss": "https://idp.test", "aud": "nms", "exp": FAR, "nbf": 1, "sub": "pf-1", "roles": ["x", "cpm-pf"], "scp": ["oma_rest_nms.all_v1"]},
    ),
)
write(
    "bearer",
    "signed-client",
    signed({"alg": "HS256"}, {"iss": "https://idp.test", "aud": "nms", "exp": FAR, "azp": "pf-client", "sip": "sip:a@b"}),
)
write("bearer", "signed-expired", signed({"alg": "HS256"}, {"iss": "https://idp.test", "aud": "nms", "exp": 1, "sub": "s"}))

# ---------------------------------------------------------------- configuration
docs = (ROOT / "docs" / "security.md").read_text() + (ROOT / "docs" / "configuration.md").read_text()
for i, block in enumerate(re.findall(r"```toml\n(.*?)```", docs, re.S)):
    write("config", f"docs-{i}", block)
write(
    "config",
    "sections",
    'data_dir = "/var/lib/nms"\n[server]\nlisten = "0.0.0.0:0"\npublic_url = "https://nms.example.com/api"\n'
    '[nms]\nstores = ["base", "other"]\nservice_only_folders = []\n[limits]\nrate_per_sec = 2.5\nrate_burst = 3\n'
    '[sync.retention.base]\nmax_age_secs = 60\nmax_objects = 0\n[cpm]\ncorrelation_tag = "us-carrier-hash"\n'
    '[auth]\ncursor_secret = "s3cret"\n[auth.digest]\nenabled = true\nalgorithms = ["MD5"]\n',
)
