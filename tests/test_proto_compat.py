"""Wire compatibility of flyteauth_core._proto with Flyte's auth messages.

Covers:
* round trips and hand-built bytes: the field numbers/types are the ones Flyte uses;
* structural + cross-parse comparison with flyteidl (v1) and flyteidl2 (test extras);
* a real gRPC call on the upstream RPC paths, served with upstream classes, called with ours;
* importing beside flyteidl and flyteidl2 in one process, in either order (descriptor pool);
* the oldest protobuf runtime we claim (4.21.12, installed with ``pip --target`` under build/);
* ``scripts/gen_protos.py --check`` (checked-in generated code is up to date).

Tests that need pip downloads or the test extras skip locally when those are unavailable,
but fail when the ``CI`` environment variable is set, so CI can never pass vacuously.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pool, struct_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from flyteauth_core._proto import auth_pb2 as ours

REPO_ROOT = Path(__file__).resolve().parent.parent
GENERATED = REPO_ROOT / "flyteauth_core" / "_proto" / "auth_pb2.py"
GEN_SCRIPT = REPO_ROOT / "scripts" / "gen_protos.py"
CACHE_DIR = REPO_ROOT / "build" / "proto-compat"
OLDEST_PROTOBUF = "4.21.12"

IN_CI = bool(os.environ.get("CI"))

# ---------------------------------------------------------------------------------------
# The contract, written out independently of the generated code.
# kind: "s" = string, "r" = repeated string, "struct" = google.protobuf.Struct message.
# ---------------------------------------------------------------------------------------
OAUTH2_METADATA_FIELDS = [
    ("issuer", 1, "s"),
    ("authorization_endpoint", 2, "s"),
    ("token_endpoint", 3, "s"),
    ("response_types_supported", 4, "r"),
    ("scopes_supported", 5, "r"),
    ("token_endpoint_auth_methods_supported", 6, "r"),
    ("jwks_uri", 7, "s"),
    ("code_challenge_methods_supported", 8, "r"),
    ("grant_types_supported", 9, "r"),
    ("device_authorization_endpoint", 10, "s"),
]
PUBLIC_CLIENT_CONFIG_FIELDS = [
    ("client_id", 1, "s"),
    ("redirect_uri", 2, "s"),
    ("scopes", 3, "r"),
    ("authorization_metadata_key", 4, "s"),
    ("service_http_endpoint", 5, "s"),
    ("audience", 6, "s"),
    ("dataplane_domain", 7, "s"),
]
USER_INFO_FIELDS = [
    ("subject", 1, "s"),
    ("name", 2, "s"),
    ("preferred_username", 3, "s"),
    ("given_name", 4, "s"),
    ("family_name", 5, "s"),
    ("email", 6, "s"),
    ("picture", 7, "s"),
    ("additional_claims", 8, "struct"),
]
CONTRACT: dict[str, list[tuple[str, int, str]]] = {
    "OAuth2MetadataRequest": [],
    "OAuth2MetadataResponse": OAUTH2_METADATA_FIELDS,
    "PublicClientAuthConfigRequest": [],
    "PublicClientAuthConfigResponse": PUBLIC_CLIENT_CONFIG_FIELDS,
    "UserInfoRequest": [],
    "UserInfoResponse": USER_INFO_FIELDS,
}

# RPC path -> (upstream service full name, method, our request class, our response class)
RPCS: dict[str, tuple[str, str, Any, Any]] = {
    "/flyteidl.service.AuthMetadataService/GetOAuth2Metadata": (
        "flyteidl.service.AuthMetadataService",
        "GetOAuth2Metadata",
        ours.OAuth2MetadataRequest,
        ours.OAuth2MetadataResponse,
    ),
    "/flyteidl.service.AuthMetadataService/GetPublicClientConfig": (
        "flyteidl.service.AuthMetadataService",
        "GetPublicClientConfig",
        ours.PublicClientAuthConfigRequest,
        ours.PublicClientAuthConfigResponse,
    ),
    "/flyteidl.service.IdentityService/UserInfo": (
        "flyteidl.service.IdentityService",
        "UserInfo",
        ours.UserInfoRequest,
        ours.UserInfoResponse,
    ),
    "/flyteidl2.auth.AuthMetadataService/GetOAuth2Metadata": (
        "flyteidl2.auth.AuthMetadataService",
        "GetOAuth2Metadata",
        ours.OAuth2MetadataRequest,
        ours.OAuth2MetadataResponse,
    ),
    "/flyteidl2.auth.AuthMetadataService/GetPublicClientConfig": (
        "flyteidl2.auth.AuthMetadataService",
        "GetPublicClientConfig",
        ours.PublicClientAuthConfigRequest,
        ours.PublicClientAuthConfigResponse,
    ),
    "/flyteidl2.auth.IdentityService/UserInfo": (
        "flyteidl2.auth.IdentityService",
        "UserInfo",
        ours.UserInfoRequest,
        ours.UserInfoResponse,
    ),
}

V1_MODULES = ["flyteidl.service.auth_pb2", "flyteidl.service.identity_pb2"]
V2_MODULES = ["flyteidl2.auth.auth_service_pb2", "flyteidl2.auth.identity_pb2"]


def _skip_or_fail(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)")
    pytest.skip(reason)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def _require(modules: list[str]) -> None:
    missing = [m for m in modules if not _importable(m)]
    if missing:
        _skip_or_fail(f"test extras not installed: {', '.join(missing)} (pip install -e '.[test]')")


def _import_upstream(modules: list[str]) -> None:
    _require(modules)
    for m in modules:
        importlib.import_module(m)


# ---------------------------------------------------------------------------------------
# Hand encoding of the protobuf wire format (just what the contract needs).
# ---------------------------------------------------------------------------------------
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _len_delimited(number: int, payload: bytes) -> bytes:
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def _is_repeated(f: FieldDescriptor) -> bool:
    # protobuf 7 removed FieldDescriptor.label; older runtimes lack is_repeated.
    if hasattr(f, "is_repeated"):
        return bool(f.is_repeated)
    return bool(f.label == FieldDescriptor.LABEL_REPEATED)  # pragma: no cover


def _sample_struct() -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update({"groups": ["admins", "dev"], "level": 3, "verified": True, "org": {"id": "o-1"}})
    return s


def _fill(msg: Any) -> Any:
    """Set every field of ``msg`` (ours or upstream) from its descriptor; values depend on number."""
    for f in msg.DESCRIPTOR.fields:
        if f.type == FieldDescriptor.TYPE_STRING and _is_repeated(f):
            getattr(msg, f.name).extend([f"f{f.number}-a", f"f{f.number}-ü", ""])
        elif f.type == FieldDescriptor.TYPE_STRING:
            setattr(msg, f.name, f"value-of-field-{f.number} ✓")
        elif f.message_type is not None and f.message_type.full_name == "google.protobuf.Struct":
            getattr(msg, f.name).CopyFrom(_sample_struct())
        else:  # pragma: no cover - contract has no other kinds
            raise AssertionError(f"unexpected field kind {f.full_name}")
    return msg


def _by_number(msg: Any) -> dict[int, Any]:
    out: dict[int, Any] = {}
    for f in msg.DESCRIPTOR.fields:
        value = getattr(msg, f.name)
        if _is_repeated(f):
            value = list(value)
        elif f.message_type is not None:
            value = value.SerializeToString(deterministic=True)
        out[f.number] = value
    return out


# ---------------------------------------------------------------------------------------
# Our descriptors and generated code.
# ---------------------------------------------------------------------------------------
def test_file_name_and_package_are_our_own() -> None:
    fd = ours.DESCRIPTOR
    assert fd.name == "flyteauth/wire/v1/auth.proto"
    assert fd.package == "flyteauth.wire.v1"
    # Registered in the default pool under our own names, never upstream's.
    pool = descriptor_pool.Default()
    assert pool.FindFileByName("flyteauth/wire/v1/auth.proto") is not None
    assert pool.FindMessageTypeByName("flyteauth.wire.v1.OAuth2MetadataResponse") is not None
    assert set(fd.message_types_by_name) == set(CONTRACT)


def test_package_reexports_message_classes() -> None:
    import flyteauth_core._proto as pkg

    for name in CONTRACT:
        assert getattr(pkg, name) is getattr(ours, name)
        assert getattr(ours, name).__module__ == "flyteauth_core._proto.auth_pb2"
    assert sorted(pkg.__all__) == sorted(CONTRACT)


def test_generated_code_is_messages_only() -> None:
    assert not list(GENERATED.parent.glob("*_grpc.py"))
    text = GENERATED.read_text(encoding="utf-8")
    assert "Generated by scripts/gen_protos.py" in text
    assert "Protobuf Python Version: 4.25.1" in text  # gencode that imports on protobuf 4.21+
    assert "runtime_version" not in text  # newer gencode hard-fails on older runtimes


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_descriptor_matches_contract(name: str) -> None:
    desc: Descriptor = getattr(ours, name).DESCRIPTOR
    got = []
    for f in desc.fields:
        if f.type == FieldDescriptor.TYPE_STRING:
            kind = "r" if _is_repeated(f) else "s"
        else:
            assert f.message_type.full_name == "google.protobuf.Struct"
            assert not _is_repeated(f)
            kind = "struct"
        got.append((f.name, f.number, kind))
    assert got == CONTRACT[name]


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_round_trip(name: str) -> None:
    cls = getattr(ours, name)
    msg = _fill(cls())
    data = msg.SerializeToString()
    back = cls.FromString(data)
    assert back == msg
    assert _by_number(back) == _by_number(msg)
    # Empty messages (the requests) must serialise to zero bytes, as upstream's do.
    assert cls().SerializeToString() == b""
    if not CONTRACT[name]:
        assert data == b""


@pytest.mark.parametrize("name", [n for n, fields in CONTRACT.items() if fields])
def test_hand_built_bytes_per_field(name: str) -> None:
    """Each field, encoded by hand with its contract number, parses into the right attribute
    and our serialiser emits exactly those bytes."""
    cls = getattr(ours, name)
    for field, number, kind in CONTRACT[name]:
        if kind == "s":
            value = f"v{number}-é"
            data = _len_delimited(number, value.encode())
            msg = cls.FromString(data)
            assert getattr(msg, field) == value
            expect = cls(**{field: value})
        elif kind == "r":
            values = ["one", "two"]
            data = b"".join(_len_delimited(number, v.encode()) for v in values)
            msg = cls.FromString(data)
            assert list(getattr(msg, field)) == values
            expect = cls(**{field: values})
        else:
            struct = _sample_struct()
            data = _len_delimited(number, struct.SerializeToString(deterministic=True))
            msg = cls.FromString(data)
            assert getattr(msg, field) == struct
            expect = cls(**{field: struct})
        assert msg == expect
        assert expect.SerializeToString(deterministic=True) == data, (name, field)
        # No other field picked anything up.
        assert [f.name for f, _ in msg.ListFields()] == [field]


# ---------------------------------------------------------------------------------------
# Against flyteidl (v1) and flyteidl2.
# ---------------------------------------------------------------------------------------
def _upstream_method(path: str) -> Any:
    service, method = RPCS[path][:2]
    return descriptor_pool.Default().FindServiceByName(service).methods_by_name[method]


def _assert_same_shape(mine: Descriptor, theirs: Descriptor) -> None:
    mine_fields = {f.number: f for f in mine.fields}
    for tf in theirs.fields:
        assert tf.number in mine_fields, f"{theirs.full_name}.{tf.name} ({tf.number}) missing in ours"
        mf = mine_fields[tf.number]
        assert (mf.name, mf.type, _is_repeated(mf)) == (tf.name, tf.type, _is_repeated(tf)), tf.full_name
        if tf.message_type is not None:
            assert mf.message_type.full_name == tf.message_type.full_name
    extra = set(mine_fields) - {f.number for f in theirs.fields}
    # flyteidl v1 (1.16.x) has no PublicClientAuthConfigResponse.dataplane_domain (7); v2 does.
    allowed = {7} if theirs.full_name == "flyteidl.service.PublicClientAuthConfigResponse" else set()
    assert extra <= allowed, f"{mine.full_name} has fields {extra} unknown to {theirs.full_name}"


def _modules_for(path: str) -> list[str]:
    return V1_MODULES if path.startswith("/flyteidl.") else V2_MODULES


@pytest.mark.parametrize("path", sorted(RPCS))
def test_shapes_match_upstream_rpc(path: str) -> None:
    _import_upstream(_modules_for(path))
    method = _upstream_method(path)
    _, _, req, resp = RPCS[path]
    _assert_same_shape(req.DESCRIPTOR, method.input_type)
    _assert_same_shape(resp.DESCRIPTOR, method.output_type)


def _upstream_class(desc: Descriptor) -> Any:
    # Upstream classes live in the module generated from the descriptor's .proto file.
    mod_name = desc.file.name[: -len(".proto")].replace("/", ".") + "_pb2"
    return getattr(importlib.import_module(mod_name), desc.name)


@pytest.mark.parametrize("path", sorted(RPCS))
def test_cross_parse_with_upstream(path: str) -> None:
    _import_upstream(_modules_for(path))
    method = _upstream_method(path)
    _, _, req, resp = RPCS[path]
    for mine_cls, their_desc in ((req, method.input_type), (resp, method.output_type)):
        their_cls = _upstream_class(their_desc)
        # ours -> theirs
        mine = _fill(mine_cls())
        theirs = their_cls.FromString(mine.SerializeToString())
        mine_values, their_values = _by_number(mine), _by_number(theirs)
        for number, value in their_values.items():
            assert mine_values[number] == value, (their_desc.full_name, number)
        # Fields upstream does not know survive as unknown fields and round-trip back.
        assert mine_cls.FromString(theirs.SerializeToString()) == mine
        # theirs -> ours
        theirs = _fill(their_cls())
        mine = mine_cls.FromString(theirs.SerializeToString())
        assert {n: v for n, v in _by_number(mine).items() if n in their_values} == _by_number(theirs)


def test_grpc_call_on_upstream_paths() -> None:
    """Serve every RPC path with the upstream classes; call it with ours via unary_unary."""
    _import_upstream(V1_MODULES + V2_MODULES)
    import grpc

    def make_handler(path: str) -> tuple[str, str, grpc.RpcMethodHandler[Any, Any]]:
        method = _upstream_method(path)
        their_req, their_resp = _upstream_class(method.input_type), _upstream_class(method.output_type)

        def behaviour(request: Any, context: grpc.ServicerContext) -> Any:
            assert request.SerializeToString() == b""
            return _fill(their_resp())

        handler = grpc.unary_unary_rpc_method_handler(
            behaviour,
            request_deserializer=their_req.FromString,
            response_serializer=their_resp.SerializeToString,
        )
        service, name = path.lstrip("/").split("/")
        return service, name, handler

    by_service: dict[str, dict[str, grpc.RpcMethodHandler[Any, Any]]] = {}
    for path in RPCS:
        service, name, handler = make_handler(path)
        by_service.setdefault(service, {})[name] = handler

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    for service, handlers in by_service.items():
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.enable_http_proxy", 0)]) as ch:
            for path, (_, _, req, resp) in sorted(RPCS.items()):
                call: Callable[..., Any] = ch.unary_unary(
                    path, request_serializer=req.SerializeToString, response_deserializer=resp.FromString
                )
                got = call(req(), timeout=10)
                their_values = _by_number(_fill(_upstream_class(_upstream_method(path).output_type)()))
                got_values = _by_number(got)
                for number, value in their_values.items():
                    assert got_values[number] == value, (path, number)
    finally:
        server.stop(None)


# ---------------------------------------------------------------------------------------
# Same process as flyteidl and flyteidl2, either order (default descriptor pool clashes).
# ---------------------------------------------------------------------------------------
_OURS_MODULE = "flyteauth_core._proto.auth_pb2"


@pytest.mark.parametrize("ours_first", [False, True], ids=["upstream-first", "ours-first"])
def test_import_beside_flyteidl_and_flyteidl2(ours_first: bool) -> None:
    _require(V1_MODULES + V2_MODULES)
    upstream = V1_MODULES + V2_MODULES
    order = [_OURS_MODULE, *upstream] if ours_first else [*upstream, _OURS_MODULE]
    code = textwrap.dedent(
        f"""
        import importlib
        for name in {order!r}:
            importlib.import_module(name)
        from google.protobuf import descriptor_pool
        pool = descriptor_pool.Default()
        for f in ("flyteauth/wire/v1/auth.proto", "flyteidl/service/auth.proto",
                  "flyteidl/service/identity.proto", "flyteidl2/auth/auth_service.proto",
                  "flyteidl2/auth/identity.proto"):
            pool.FindFileByName(f)
        import flyteauth_core._proto as p
        m = p.PublicClientAuthConfigResponse(client_id="c", dataplane_domain="d")
        assert p.PublicClientAuthConfigResponse.FromString(m.SerializeToString()) == m
        print("ok")
        """
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


# ---------------------------------------------------------------------------------------
# Oldest protobuf runtime we claim (pyproject: protobuf>=4.21.1).
# ---------------------------------------------------------------------------------------
def _pip_target(requirement: str, dest: Path) -> Path:
    """``pip install --target`` once into ``dest`` (cached across runs under build/)."""
    marker = dest / ".flyteauth-complete"
    if marker.exists():
        return dest
    tmp = dest.with_name(f"{dest.name}.tmp-{uuid.uuid4().hex[:8]}")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        "--only-binary=:all:",
        "--target",
        str(tmp),
        requirement,
    ]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=180)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        _skip_or_fail(f"pip could not install {requirement}: {proc.stderr.strip()[-500:]}")
    (tmp / marker.name).write_text(requirement + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    try:
        tmp.rename(dest)
    except OSError:  # a concurrent run won the race
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


_OLD_RUNTIME_SCRIPT = r"""
import importlib.util, sys
import google.protobuf
from google.protobuf.internal import api_implementation
target, generated, want_version, want_impl = sys.argv[1:5]
assert google.protobuf.__version__ == want_version, google.protobuf.__version__
assert google.protobuf.__file__.startswith(target), google.protobuf.__file__
assert api_implementation.Type() == want_impl, api_implementation.Type()

# Load the generated file by path: it needs only google.protobuf, not flyteauth_core's deps.
spec = importlib.util.spec_from_file_location("flyteauth_core._proto.auth_pb2", generated)
mod = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = mod
spec.loader.exec_module(mod)

m = mod.OAuth2MetadataResponse(
    issuer="https://idp", token_endpoint="https://idp/token", grant_types_supported=["client_credentials"]
)
data = m.SerializeToString()
assert data.startswith(b"\x0a\x0bhttps://idp"), data
assert mod.OAuth2MetadataResponse.FromString(data) == m
c = mod.PublicClientAuthConfigResponse(client_id="flytectl", scopes=["all"], dataplane_domain="dp")
assert mod.PublicClientAuthConfigResponse.FromString(c.SerializeToString()) == c
u = mod.UserInfoResponse(subject="s", email="e@x")
u.additional_claims.update({"groups": ["a", "b"], "n": 1})
assert mod.UserInfoResponse.FromString(u.SerializeToString()) == u
for empty in (mod.OAuth2MetadataRequest, mod.PublicClientAuthConfigRequest, mod.UserInfoRequest):
    assert empty().SerializeToString() == b""
print("ok", google.protobuf.__version__, api_implementation.Type())
"""


@pytest.mark.parametrize("impl", ["upb", "python"])
def test_oldest_protobuf_runtime(impl: str) -> None:
    target = _pip_target(f"protobuf=={OLDEST_PROTOBUF}", CACHE_DIR / f"protobuf-{OLDEST_PROTOBUF}")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(target), str(REPO_ROOT)]),
        "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": impl,
        "PYTHONNOUSERSITE": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-c", _OLD_RUNTIME_SCRIPT, str(target), str(GENERATED), OLDEST_PROTOBUF, impl],
        check=False,
        cwd=CACHE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split() == ["ok", OLDEST_PROTOBUF, impl]


# ---------------------------------------------------------------------------------------
# Checked-in generated code is what scripts/gen_protos.py produces.
# ---------------------------------------------------------------------------------------
def test_gen_protos_check() -> None:
    spec = importlib.util.spec_from_file_location("_flyteauth_gen_protos", GEN_SCRIPT)
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    try:
        gen.ensure_toolchain()  # cached venv under build/protogen-venv; first run needs PyPI
    except (subprocess.CalledProcessError, SystemExit) as exc:
        _skip_or_fail(f"could not set up grpcio-tools=={gen.GRPCIO_TOOLS_VERSION}: {exc}")
    proc = subprocess.run(
        [sys.executable, str(GEN_SCRIPT), "--check"],
        check=False,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
