"""Extension example: your own agent beside Escalator's, in the same Faust app.

Escalations per team (the escalation's target) over the last hour, in a hopping windowed
table (1 h windows every 10 min), served on the app's web server at /team-load/:

    faust -A streams.cli.faust_team_load worker          # with the ESCALATOR_* settings

Any module whose `app` is Escalator's (streams.cli.faust_app.current().app) with agents, tables
and pages added runs the same way; `escalator worker --runtime faust` runs Escalator's agents
alone. The app is built on first use of `app`, so importing this module connects to nothing.

How it keeps clear of the pitfalls in FAUST-KAFKA-NOTES.md:
- Escalations are keyed by ticket, so the agent first regroups them by team (`group_by`, a
  repartition topic): every write then happens inside stream iteration, on the partition
  that owns the team, and a team's count lives in one partition, not a piece in each.
- Windows are relative to the stream (when the escalation was sent), not to its event time:
  Faust expires windows against the wall clock, so event-time windows of a replayed history
  would land in windows already expired. Nothing relies on `on_window_close` (it fires for
  one partition's keys only and never for windows restored after a restart).
- The page reads the window that starts earliest and still contains now (`.now()`): a full
  hour. With several workers each one answers for the teams of its partitions (Faust's
  `app.table_route` can forward the request to the owner).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import faust

from schemas.codec import codec_for
from streams.cli.faust_app import current
from streams.runtime.faust_runtime import FaustRuntime


def add_team_load(runtime: FaustRuntime) -> Any:
    """Add the agent, its windowed table and the /team-load/ page to `runtime`'s app; returns
    the table."""
    app = runtime.app
    escalations = app.topic(runtime.topics.escalations, key_type=bytes, value_type=bytes)
    codec = codec_for("Escalation", runtime.settings)
    team_escalations = (
        app.Table("team-escalations", default=int)
        .hopping(timedelta(hours=1), timedelta(minutes=10), expires=timedelta(hours=2))
        .relative_to_stream()
    )

    def team_of(value: bytes) -> str:
        return str(codec.decode(value)["target"])

    @app.agent(escalations, name="examples.team_load")
    async def count_team_escalations(stream: Any) -> None:
        async for value in stream.group_by(team_of, name="by-team"):
            team_escalations[team_of(value)] += 1

    @app.page("/team-load/")
    class TeamLoad(faust.web.View):  # type: ignore[misc]
        """{team: escalations in the last hour} for the teams of this worker's partitions."""

        async def get(self, request: Any) -> Any:
            table = team_escalations.table  # keys are (team, window)
            teams = sorted({key[0] for key in table})
            return self.json({team: team_escalations[team].now() for team in teams})

    return team_escalations


_added: Any = None


def __getattr__(name: str) -> Any:
    """`app` (what `faust -A` loads): Escalator's app with the team load added once."""
    global _added
    if name == "app":
        runtime = current()
        if _added is None:
            _added = add_team_load(runtime)
        return runtime.app
    raise AttributeError(name)
