"""An SDK that embeds flyteauth: its own HTTP transport, events, prompts and a grpc channel."""
import grpc
import httpx2

from flyteauth_core import AuthConfig, AuthSession, FlyteAuthError
from flyteauth_core.testing import ECHO, DemoTokenEndpoint, FlyteTestServer


class MySdkClient:
    def __init__(self, endpoint: str, client_id: str, secret: str) -> None:
        self.events: list[str] = []
        config = AuthConfig(endpoint=endpoint, insecure=True, auth_type="ClientSecret",
                            client_id=client_id, client_secret=secret)
        self.session = AuthSession(
            config, interactive=False,
            http_transport_factory=lambda: httpx2.HTTPTransport(retries=1),  # the SDK's own transport
            on_event=lambda event: self.events.append(event.kind),           # the SDK's telemetry
            browser_opener=lambda url: print("open", url) is None,           # unused by ClientSecret
        )
        self.echo = self.session.channel().unary_unary(ECHO["unary"])

    def ping(self, payload: bytes) -> bytes:
        return self.echo(payload, timeout=10)


with DemoTokenEndpoint("my-sdk", "my-sdk-secret") as idp, \
        FlyteTestServer(idp.validate, token_endpoint=idp.url) as server:
    client = MySdkClient(server.target, "my-sdk", "my-sdk-secret")
    try:
        assert client.ping(b"hello") == b"hello"
    except (FlyteAuthError, grpc.RpcError) as error:
        raise SystemExit(f"auth failed: {error}") from None
    print("ok; events:", client.events, "; token requests:", idp.requests)
    client.session.close()
