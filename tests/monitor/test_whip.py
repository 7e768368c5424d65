"""WHIP (RFC 9725) over HTTP: status codes, headers and CORS, against the real app.

The HTTP side runs in-process (httpx over ASGI); offers come from real aiortc peers,
and the monitor's peer connection really negotiates (ICE gathering on 127.0.0.2).
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from starlette.applications import Starlette

from monitor.app import create_app
from monitor.config import Mode, Settings
from monitor.media_host import media_host
from monitor.tokens import TokenRole, issue_token
from probes.base import Role
from tests.monitor.peers import MovingPatternTrack, ScriptedSpeechTrack

SECRET = "w" * 40
ORIGIN = "https://therapy.example"


@pytest.fixture(autouse=True)
def _loopback_media() -> Iterator[None]:
    with media_host("127.0.0.2"):
        yield


@pytest.fixture
async def app() -> AsyncIterator[Starlette]:
    application = create_app(Settings(secret=SECRET, allowed_origins=(ORIGIN,)))
    yield application
    await application.state.registry.aclose()


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://monitor") as http:
        yield http


def token(session: str = "s1", role: Role = Role.CLIENT, **kw: object) -> str:
    return issue_token(SECRET, role=TokenRole.PUBLISHER, session=session, participant=role, **kw)  # type: ignore[arg-type]


async def make_offer(*, video: bool = True, audio: bool = True) -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        if audio:
            pc.addTransceiver(ScriptedSpeechTrack([]), direction="sendonly")
        if video:
            pc.addTransceiver(MovingPatternTrack(), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)
    finally:
        await pc.close()


def only_codec(sdp: str, kind: str, keep: str, rename: str) -> str:
    """The offer with the ``kind`` section offering only ``keep``, renamed ``rename``."""
    keep_pt = re.search(rf"a=rtpmap:(\d+) {re.escape(keep)}", sdp)
    assert keep_pt is not None
    pt = keep_pt.group(1)
    out: list[str] = []
    section = ""
    for original in sdp.splitlines():
        line = original
        if line.startswith("m="):
            section = line.split()[0][2:]
            if section == kind:
                line = " ".join([*line.split()[:3], pt])
        elif section == kind and line.startswith(("a=rtpmap:", "a=fmtp:", "a=rtcp-fb:")):
            if not line.split(":", 1)[1].startswith(f"{pt} "):
                continue
            line = line.replace(keep, rename)
        elif section == kind and line.startswith("a=ssrc-group"):
            continue
        out.append(line)
    return "\r\n".join(out) + "\r\n"


async def post(
    client: httpx.AsyncClient,
    sdp: str,
    *,
    bearer: str | None,
    path: str = "/whip/s1/client",
    content_type: str = "application/sdp",
) -> httpx.Response:
    headers = {"Content-Type": content_type}
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    return await client.post(path, content=sdp, headers=headers)


@pytest.mark.slow
async def test_a_publisher_gets_201_an_answer_and_a_location(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    response = await post(client, await make_offer(), bearer=token())
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/sdp"
    location = response.headers["location"]
    assert re.fullmatch(r"/whip/s1/client/[A-Za-z0-9_-]{16,}", location)
    answer = response.text
    assert answer.startswith("v=0")
    assert "a=recvonly" in answer
    assert "a=candidate:" in answer
    assert "127.0.0.2" in answer
    assert app.state.registry.get("s1").session.is_present(Role.CLIENT)


@pytest.mark.slow
async def test_delete_on_the_location_ends_the_stream_then_404(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    location = (await post(client, await make_offer(), bearer=token())).headers["location"]
    auth = {"Authorization": f"Bearer {token()}"}
    assert (await client.delete(location, headers=auth)).status_code == 200
    assert not app.state.registry.get("s1").session.is_present(Role.CLIENT)
    assert (await client.delete(location, headers=auth)).status_code == 404


@pytest.mark.slow
async def test_delete_needs_the_publishers_token(client: httpx.AsyncClient) -> None:
    location = (await post(client, await make_offer(), bearer=token())).headers["location"]
    assert (await client.delete(location)).status_code == 401
    other = {"Authorization": f"Bearer {token(role=Role.THERAPIST)}"}
    assert (await client.delete(location, headers=other)).status_code == 403


@pytest.mark.slow
async def test_a_second_publisher_for_the_same_role_gets_409(client: httpx.AsyncClient) -> None:
    offer = await make_offer(video=False)
    assert (await post(client, offer, bearer=token())).status_code == 201
    second = await post(client, await make_offer(video=False), bearer=token())
    assert second.status_code == 409
    assert "already publishing" in second.text
    therapist = await post(
        client,
        await make_offer(video=False),
        bearer=token(role=Role.THERAPIST),
        path="/whip/s1/therapist",
    )
    assert therapist.status_code == 201  # the other role is free


@pytest.mark.slow
async def test_a_publisher_may_ask_for_metadata_mode_and_a_conflicting_mode_is_409(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    first = await post(
        client, await make_offer(video=False), bearer=token(), path="/whip/s1/client?mode=metadata"
    )
    assert first.status_code == 201
    assert app.state.registry.get("s1").session.mode is Mode.METADATA
    second = await post(
        client,
        await make_offer(video=False),
        bearer=token(role=Role.THERAPIST),
        path="/whip/s1/therapist?mode=full",
    )
    assert second.status_code == 409


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("hello", "must start with v=0"),
        ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", "no media section"),
        ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111\r\n", "malformed SDP"),
    ],
)
async def test_malformed_sdp_is_400_with_a_reason(
    client: httpx.AsyncClient, body: str, reason: str
) -> None:
    response = await post(client, body, bearer=token())
    assert response.status_code == 400
    assert reason in response.text


async def test_an_offer_without_ice_credentials_is_400(client: httpx.AsyncClient) -> None:
    offer = await make_offer(video=False)
    lines = [line for line in offer.splitlines() if not line.startswith("a=ice-")]
    stripped = "\r\n".join(lines) + "\r\n"
    response = await post(client, stripped, bearer=token())
    assert response.status_code == 400
    assert "ICE credentials" in response.text


async def test_an_offer_that_only_receives_is_400(client: httpx.AsyncClient) -> None:
    offer = (await make_offer(video=False)).replace("a=sendonly", "a=recvonly")
    response = await post(client, offer, bearer=token())
    assert response.status_code == 400
    assert "does not send" in response.text


async def test_av1_only_video_is_406(client: httpx.AsyncClient) -> None:
    offer = only_codec(await make_offer(), "video", "VP8/90000", "AV1/90000")
    response = await post(client, offer, bearer=token())
    assert response.status_code == 406
    assert "no supported video codec" in response.text
    assert "VP8" in response.text


async def test_isac_only_audio_is_406(client: httpx.AsyncClient) -> None:
    offer = only_codec(await make_offer(video=False), "audio", "opus/48000/2", "ISAC/16000")
    response = await post(client, offer, bearer=token())
    assert response.status_code == 406
    assert "no supported audio codec" in response.text


async def test_a_wrong_content_type_is_415(client: httpx.AsyncClient) -> None:
    response = await post(client, await make_offer(), bearer=token(), content_type="text/plain")
    assert response.status_code == 415


async def test_an_oversized_offer_is_413(client: httpx.AsyncClient) -> None:
    response = await post(client, "v=0\r\n" + "a=x\r\n" * 20000, bearer=token())
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("bearer", "status"),
    [
        (None, 401),
        ("not-a-jwt", 401),
        (
            issue_token("z" * 40, role=TokenRole.PUBLISHER, session="s1", participant=Role.CLIENT),
            401,
        ),
        (token(ttl=60, now=time.time() - 3600), 401),
        (token(session="other"), 403),
        (token(role=Role.THERAPIST), 403),
        (issue_token(SECRET, role=TokenRole.THERAPIST, session="s1"), 403),
    ],
    ids=["missing", "garbage", "forged", "expired", "other-session", "other-role", "not-publisher"],
)
async def test_unknown_or_wrong_scope_tokens_are_refused(
    client: httpx.AsyncClient, bearer: str | None, status: int
) -> None:
    response = await post(client, await make_offer(video=False), bearer=bearer)
    assert response.status_code == status
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    if bearer:
        assert bearer not in response.text  # errors never echo the token


async def test_an_unknown_role_is_404(client: httpx.AsyncClient) -> None:
    response = await post(client, "v=0", bearer=token(), path="/whip/s1/observer")
    assert response.status_code == 404


async def test_an_unknown_mode_is_400(client: httpx.AsyncClient) -> None:
    response = await post(
        client, await make_offer(video=False), bearer=token(), path="/whip/s1/client?mode=x"
    )
    assert response.status_code == 400


async def test_patch_is_405_because_the_answer_holds_every_candidate(
    client: httpx.AsyncClient,
) -> None:
    response = await client.patch(
        "/whip/s1/client/abc",
        content="a=candidate",
        headers={
            "Authorization": f"Bearer {token()}",
            "Content-Type": "application/trickle-ice-sdpfrag",
        },
    )
    assert response.status_code == 405


async def test_cors_preflight_allows_a_configured_origin(client: httpx.AsyncClient) -> None:
    response = await client.options(
        "/whip/s1/client",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed
    assert "content-type" in allowed


async def test_cors_preflight_refuses_another_origin(client: httpx.AsyncClient) -> None:
    response = await client.options(
        "/whip/s1/client",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.slow
async def test_a_cross_origin_post_exposes_location(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/whip/s1/client",
        content=await make_offer(video=False),
        headers={
            "Content-Type": "application/sdp",
            "Authorization": f"Bearer {token()}",
            "Origin": ORIGIN,
        },
    )
    assert response.status_code == 201
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "location" in response.headers["access-control-expose-headers"].lower()


async def test_plain_options_advertises_sdp(client: httpx.AsyncClient) -> None:
    response = await client.options("/whip/s1/client")
    assert response.status_code == 204
    assert response.headers["accept-post"] == "application/sdp"


def test_codec_rewrite_helper_keeps_one_payload_type() -> None:
    sdp = (
        "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 97 98\r\na=rtpmap:97 VP8/90000\r\n"
        "a=rtpmap:98 rtx/90000\r\na=fmtp:98 apt=97\r\n"
    )
    rewritten = only_codec(sdp, "video", "VP8/90000", "AV1/90000")
    assert "m=video 9 UDP/TLS/RTP/SAVPF 97\r\n" in rewritten
    assert "a=rtpmap:97 AV1/90000" in rewritten
    assert "rtx" not in rewritten
