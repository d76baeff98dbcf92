"""A session's feedback: the records its runs leave under the feedback policy, and ratings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..events import RunEvent
from ..feedback import FeedbackRecord, FeedbackSummary, summarize
from ..store import SessionStore

if TYPE_CHECKING:
    from ..agent import Agent
    from ..store import RunRecord

__all__ = ["SessionFeedback"]


class SessionFeedback:
    """Feedback of a session (mixed into :class:`~loom_nb.session.Session`)."""

    agent: Agent
    id: str
    store: SessionStore

    if TYPE_CHECKING:
        def _own_run(self, run_id: str, hint: str = "") -> RunRecord: ...  # see SessionRuns

    def _record_feedback(self, event: RunEvent) -> None:
        if event.session_id != self.id:
            return  # a nested run's event, forwarded here: its own session records it
        record = self.agent.runtime.feedback.record_for(event)
        if record is not None:
            self.store.append_feedback(record)
            self.agent.runtime.feedback.send(record)

    def feedback(self, run_id: str, score: float, comment: str = "") -> FeedbackRecord:
        """Rate a run of this session (any number scale you like; kept as given).

        Rating a run again replaces its rating: the summary and the trace view count the newest
        (the log keeps each, and each goes to the feedback sinks).
        """
        self._own_run(run_id, " to rate; use a run_id from session.runs")
        record = FeedbackRecord(session_id=self.id, run_id=run_id, kind="rating",
                                data={"score": float(score), "comment": comment})
        self.store.append_feedback(record)
        self.agent.runtime.feedback.send(record)
        return record

    @property
    def feedback_records(self) -> list[FeedbackRecord]:
        """The feedback kept for this session, oldest first."""
        return self.store.feedback(self.id)

    def feedback_summary(self) -> FeedbackSummary:
        """Pass rates, tool error rates, denials and ratings of this session (a dict that prints
        as a table)."""
        return summarize(self.feedback_records)
