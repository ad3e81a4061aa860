"""A typed HTTP client of the scalesweep API (httpx): what the CLI and notebooks use.

``Client(server)`` talks to ``SCALESWEEP_SERVER`` by default; list methods follow every
cursor, ``events`` parses the server-sent event stream, ``wait_for`` follows a sweep to its
end (events, falling back to polling) and reports progress through a callback.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO

import httpx

from service.config import Settings
from service.records import RunRecord, SweepRecord
from service.results import RunStatus, Spectrum
from service.spec import SweepSpec

if TYPE_CHECKING:
    import pandas as pd

    # the answers' models import the fits' Segment, and with it scipy: loaded by the methods
    # that return them, so that a client that only submits and follows stays light
    from service.analysis.reports import (
        ExponentReport,
        PhaseDiagram,
        SpectraSummary,
        SpectrumTheory,
        TheoryReport,
    )

TERMINAL = ("succeeded", "cancelled")


class ServerError(Exception):
    """The server answered with an error; ``detail`` is its ``detail`` field."""

    def __init__(self, status_code: int, detail: Any) -> None:
        self.status_code = status_code
        self.detail = detail
        super().__init__(f"HTTP {status_code}: {format_detail(detail)}")


def format_detail(detail: Any) -> str:
    """A human-readable line from a ``detail`` (FastAPI's 422 list names each field)."""
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, Mapping):
                loc = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
                parts.append(f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg", "")))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return str(detail)


@dataclass(frozen=True)
class Submitted:
    """Answer to a submission."""

    id: int
    status: str
    n_runs: int


@dataclass(frozen=True)
class Event:
    """One server-sent event."""

    event: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Progress:
    """Where a sweep stands: what ``wait_for`` passes to its callback."""

    sweep_id: int
    status: str
    n_runs: int
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def done(self) -> int:
        """Runs that have ended (succeeded, failed or cancelled)."""
        return sum(self.counts.get(s, 0) for s in ("succeeded", "failed", "cancelled"))

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Progress:
        """From an event payload or a sweep record's JSON."""
        return cls(
            sweep_id=int(data.get("sweep_id", data.get("id", 0))),
            status=str(data["status"]),
            n_runs=int(data["n_runs"]),
            counts={str(k): int(v) for k, v in dict(data.get("counts", {})).items()},
        )


class Client:
    """Client of one scalesweep server."""

    def __init__(
        self,
        server: str | None = None,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        if http is None:
            settings = Settings() if server is None or token is None else None
            base = server or (settings.server if settings else "")
            token = token or (settings.api_token if settings else None)
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            http = httpx.Client(
                base_url=base.rstrip("/"), headers=headers, timeout=timeout, transport=transport
            )
        self.http = http

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- plumbing --------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        _raise_for_status(response)
        return response.json()

    def _pages(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            query = {**params, **({"cursor": cursor} if cursor else {})}
            page = self._request("GET", path, params=query)
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    # -- API -------------------------------------------------------------------------

    def submit(self, spec: SweepSpec | Mapping[str, Any]) -> Submitted:
        """POST a sweep spec; the server validates, expands and queues it."""
        body = spec.model_dump(mode="json") if isinstance(spec, SweepSpec) else dict(spec)
        data = self._request("POST", "/v1/sweeps", json=body)
        return Submitted(id=int(data["id"]), status=str(data["status"]), n_runs=int(data["n_runs"]))

    def get_sweep(self, sweep_id: int) -> SweepRecord:
        """One sweep with its counts."""
        return SweepRecord.model_validate(self._request("GET", f"/v1/sweeps/{sweep_id}"))

    def list_sweeps(
        self, *, page_size: int = 100, tag: str | None = None, archived: str = "false"
    ) -> Iterator[SweepRecord]:
        """Every sweep, newest first (follows every cursor); only those with ``tag``;
        ``archived``: "false" (hidden), "true" (only archived) or "all"."""
        params: dict[str, Any] = {"limit": page_size, "archived": archived}
        if tag is not None:
            params["tag"] = tag
        for item in self._pages("/v1/sweeps", params):
            yield SweepRecord.model_validate(item)

    def update_sweep(
        self,
        sweep_id: int,
        *,
        name: str | None = None,
        tags: list[str] | None = None,
        archived: bool | None = None,
    ) -> SweepRecord:
        """Rename, replace the tags of, or (un)archive a sweep."""
        given = {"name": name, "tags": tags, "archived": archived}
        body = {k: v for k, v in given.items() if v is not None}
        return SweepRecord.model_validate(
            self._request("PATCH", f"/v1/sweeps/{sweep_id}", json=body)
        )

    def delete_sweep(self, sweep_id: int) -> int:
        """Delete a sweep with its runs (admin token); returns how many runs were deleted."""
        return int(self._request("DELETE", f"/v1/sweeps/{sweep_id}")["deleted_runs"])

    def export(self, sweep_id: int, out: BinaryIO, *, format: str = "csv") -> int:
        """Stream the sweep's export (csv, parquet or jsonl) into ``out``; returns bytes."""
        written = 0
        path = f"/v1/sweeps/{sweep_id}/export"
        with self.http.stream("GET", path, params={"format": format}) as response:
            if response.is_error:
                response.read()
                _raise_for_status(response)
            for chunk in response.iter_bytes():
                out.write(chunk)
                written += len(chunk)
        return written

    def runs_frame(self, sweep_id: int) -> pd.DataFrame:
        """Every run of a sweep as a pandas DataFrame with the export's columns (one row per
        run; needs pandas and pyarrow: ``pip install 'scalesweep[frames]'``)."""
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - pandas is in the lock file
            raise ImportError("Client.runs_frame needs pandas: pip install pandas") from exc
        buf = io.BytesIO()
        self.export(sweep_id, buf, format="parquet")
        buf.seek(0)
        return pd.read_parquet(buf)

    def list_runs(
        self,
        sweep_id: int,
        *,
        status: RunStatus | None = None,
        page_size: int = 1000,
        **filters: float | int | str,
    ) -> Iterator[RunRecord]:
        """Every run of a sweep in expansion order (follows every cursor); config filters."""
        params: dict[str, Any] = {"limit": page_size, **filters}
        if status is not None:
            params["status"] = status
        for item in self._pages(f"/v1/sweeps/{sweep_id}/runs", params):
            yield RunRecord.model_validate(item)

    def get_run(self, run_id: int) -> RunRecord:
        """One run with its learning curve."""
        return RunRecord.model_validate(self._request("GET", f"/v1/runs/{run_id}"))

    def get_spectra(self, run_id: int) -> list[Spectrum]:
        """The spectra of a run's trained weights."""
        data = self._request("GET", f"/v1/runs/{run_id}/spectrum")
        return [_spectrum(s) for s in data["spectra"]]

    def spectra_with_theory(self, run_id: int) -> tuple[list[Spectrum], SpectrumTheory | None]:
        """The spectra of a run and the state-evolution prediction of the first (None when
        the theory cannot predict it)."""
        data = self._request("GET", f"/v1/runs/{run_id}/spectrum", params={"theory": "true"})
        spectra = [_spectrum(s) for s in data["spectra"]]
        theory = data.get("theory")
        from service.analysis.reports import SpectrumTheory

        return spectra, SpectrumTheory.model_validate(theory) if theory else None

    def cancel(self, sweep_id: int) -> SweepRecord:
        """Cancel a sweep."""
        return SweepRecord.model_validate(self._request("POST", f"/v1/sweeps/{sweep_id}/cancel"))

    def extend(self, sweep_id: int, grid: Mapping[str, list[float] | list[int]]) -> SweepRecord:
        """Add grid values, e.g. ``{"seed": [3, 4]}``."""
        data = self._request("POST", f"/v1/sweeps/{sweep_id}/extend", json={"grid": dict(grid)})
        return SweepRecord.model_validate(data)

    def exponents(
        self, sweep_id: int, *, x: str = "n", by: list[str] | None = None
    ) -> ExponentReport:
        """Fitted exponents of R against x, per group of the ``by`` axes."""
        params: dict[str, Any] = {"x": x}
        if by is not None:
            params["by"] = ",".join(by)
        data = self._request("GET", f"/v1/sweeps/{sweep_id}/exponents", params=params)
        from service.analysis.reports import ExponentReport

        return ExponentReport.model_validate(data)

    def theory(self, sweep_id: int, *, x: str = "n", by: list[str] | None = None) -> TheoryReport:
        """State-evolution predictions next to the measurement."""
        params: dict[str, Any] = {"x": x}
        if by is not None:
            params["by"] = ",".join(by)
        data = self._request("GET", f"/v1/sweeps/{sweep_id}/theory", params=params)
        from service.analysis.reports import TheoryReport

        return TheoryReport.model_validate(data)

    def phase_diagram(self, sweep_id: int) -> PhaseDiagram:
        """Exponent against the power l of a linked weight decay, per family."""
        data = self._request("GET", f"/v1/sweeps/{sweep_id}/phase-diagram")
        from service.analysis.reports import PhaseDiagram

        return PhaseDiagram.model_validate(data)

    def spectra_summary(self, sweep_id: int) -> SpectraSummary:
        """Tail and rank exponents of the weights next to the excess risk, per grid point."""
        data = self._request("GET", f"/v1/sweeps/{sweep_id}/spectra/summary")
        from service.analysis.reports import SpectraSummary

        return SpectraSummary.model_validate(data)

    def health(self) -> dict[str, Any]:
        """The /healthz body (also when it answers 503)."""
        body: dict[str, Any] = self.http.get("/healthz").json()
        return body

    def events(self, sweep_id: int) -> Iterator[Event]:
        """The sweep's server-sent events until the server closes the stream."""
        timeout = httpx.Timeout(self.http.timeout.connect, read=60.0)  # keepalive every 10 s
        with self.http.stream("GET", f"/v1/sweeps/{sweep_id}/events", timeout=timeout) as resp:
            if resp.status_code >= 400:
                resp.read()
                _raise_for_status(resp)
            name = "message"
            data: list[str] = []
            for line in resp.iter_lines():
                if not line:
                    if data:
                        yield Event(name, json.loads("\n".join(data)))
                    name, data = "message", []
                elif line.startswith(":"):
                    continue
                elif line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip())

    def wait_for(
        self,
        sweep_id: int,
        progress: Callable[[Progress], None] | None = None,
        *,
        poll_s: float = 1.0,
        timeout_s: float | None = None,
        use_events: bool = True,
    ) -> SweepRecord:
        """Block until the sweep has ended; ``progress`` gets every change of the counts."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        if use_events:
            try:
                for event in self.events(sweep_id):
                    if event.event == "progress" and progress is not None:
                        progress(Progress.of(event.data))
                    elif event.event == "sweep_finished":
                        return self.get_sweep(sweep_id)
                    if deadline is not None and time.monotonic() > deadline:
                        raise TimeoutError(f"sweep {sweep_id} still running after {timeout_s} s")
            except httpx.TransportError:
                pass  # stream broken or unsupported by a proxy: poll instead
        while True:
            sweep = self.get_sweep(sweep_id)
            if progress is not None:
                progress(Progress.of(sweep.model_dump(mode="json")))
            if sweep.status in TERMINAL:
                return sweep
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"sweep {sweep_id} still running after {timeout_s} s")
            time.sleep(poll_s)


def _spectrum(served: dict[str, Any]) -> Spectrum:
    """A served spectrum without the serving fields (``n_values_total``, ``truncated``: the
    server may cut the values it sends; see GET /v1/runs/{id}/spectrum)."""
    return Spectrum.model_validate(
        {k: v for k, v in served.items() if k not in ("n_values_total", "truncated")}
    )


def _raise_for_status(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        detail = response.json().get("detail", response.text)
    except (json.JSONDecodeError, AttributeError):
        detail = response.text or response.reason_phrase
    raise ServerError(response.status_code, detail)
