"""An MCP server written with the official MCP Python SDK, protected by this package's resource
helper, running in-process on 127.0.0.1 (uvicorn in a thread). Reusable by any test::

    with RunningMcpServer() as mcp:
        mcp.url            # "http://127.0.0.1:<port>/mcp": the resource identifier, byte for byte
        mcp.metadata_url   # its RFC 9728 metadata URL
        asyncio.run(call_tool(mcp.url, token, "whoami"))

Validation runs in worker threads: a test using it needs committed data
(``pytest.mark.django_db(transaction=True)`` or the live server), and tokens either issued through
the provider (a DOT row) or minted with ``RESOURCE_SERVER_CHECK_REVOCATION`` off.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable
from typing import Any

MCP_SCOPE = "mcp:tools"
SERVER_NAME = "oidc-provider-ext test MCP server"


def build_server(**options: Any) -> Any:
    """An MCPServer with two tools: ``whoami`` (the token the SDK saw) and ``add``. ``options``
    go to MCPServer (``token_verifier``, ``auth``)."""
    from mcp.server.auth.middleware.auth_context import get_access_token
    from mcp.server.mcpserver import MCPServer

    server = MCPServer(SERVER_NAME, **options)

    @server.tool()
    def whoami() -> dict[str, Any]:
        """Who the access token says is calling."""
        token = get_access_token()
        if token is None:
            return {"sub": None}
        return {"sub": token.subject, "client_id": token.client_id, "resource": token.resource}

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    return server


class RunningMcpServer:
    """The protected MCP server on a free port of 127.0.0.1 for the duration of a ``with`` block.

    ``required_scopes`` must all be granted; ``scopes_supported`` is what the metadata advertises
    (default: the required scopes). ``sdk_auth=True`` protects it the SDK's way instead, with its
    own bearer middleware and metadata route around our ``TokenVerifier``.
    """

    def __init__(
        self,
        *,
        required_scopes: Iterable[str] = (MCP_SCOPE,),
        scopes_supported: Iterable[str] | None = None,
        path: str = "/mcp",
        sdk_auth: bool = False,
    ) -> None:
        import uvicorn

        from oidc_provider_ext.conf import app_settings
        from oidc_provider_ext.contrib.mcp import TokenVerifier, protect_mcp_app
        from oidc_provider_ext.resource import ProtectedResource

        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}{path}"
        required = tuple(required_scopes)
        self.resource = ProtectedResource(
            self.url,
            scopes_supported=tuple(required if scopes_supported is None else scopes_supported),
            name=SERVER_NAME,
        )
        self.metadata_url = self.resource.metadata_url
        if sdk_auth:
            from mcp.server.auth.settings import AuthSettings

            auth = AuthSettings(
                issuer_url=app_settings.ISSUER,
                resource_server_url=self.url,
                required_scopes=list(required),
                validate_token_resource=True,
            )
            server = build_server(token_verifier=TokenVerifier(self.resource), auth=auth)
            app = server.streamable_http_app(streamable_http_path=path, json_response=True)
        else:
            app = protect_mcp_app(
                build_server().streamable_http_app(streamable_http_path=path, json_response=True),
                resource=self.resource,
                required_scopes=required,
            )
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def __enter__(self) -> RunningMcpServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("The MCP server did not start.")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._socket.close()


async def call_tool(url: str, token: str | None, name: str, arguments: dict[str, Any] | None = None) -> Any:
    """Connect with the SDK's streamable-HTTP client (``Authorization: Bearer token``), initialise
    and call one tool; returns the CallToolResult."""
    import httpx2
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=10) as http,
        streamable_http_client(url, http_client=http) as streams,
        ClientSession(streams[0], streams[1]) as session,
    ):
        await session.initialize()
        return await session.call_tool(name, arguments or {})
