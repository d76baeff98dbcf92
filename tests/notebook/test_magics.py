"""The %loom magics, driven through a real IPython shell (no kernel; see test_kernel_notebook)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import CapturedIO, capture_output

from loom_nb.errors import ConfigError
from loom_nb import Agent, Model, ModelRequest, RunResult, SessionConfig
from loom_nb.notebook.magics import CommandError, LoomMagics, interpolate, parse_command


def displays(captured: CapturedIO) -> list[dict[str, Any]]:
    """The display messages a cell produced, in order."""
    return [{"data": o.data, "metadata": o.metadata, "transient": o.transient, "update": o.update}
            for o in captured.outputs]


def user_texts(request: ModelRequest) -> list[str]:
    return [m.text for m in request.messages if m.role == "user"]


def scripted_agent(ip: InteractiveShell, turns: list[Any], name: str = "agent",
                   **kwargs: Any) -> Agent:
    agent = Agent(Model.scripted(turns), **kwargs)
    ip.user_ns[name] = agent
    return agent


# -- running ---------------------------------------------------------------------------------------


def test_line_magic_runs_the_agent_and_binds_the_result(ip: InteractiveShell) -> None:
    scripted_agent(ip, ["Hello there!"])
    with capture_output() as captured:
        value = ip.run_line_magic("loom", "run -a agent -o r Say hello")
    assert value is None  # the display is the output; no duplicate Out[]
    result = ip.user_ns["r"]
    assert isinstance(result, RunResult)
    assert (result.status, result.output) == ("completed", "Hello there!")
    shown = displays(captured)
    assert len(shown) == 1  # a bare shell has no frontend: one final display, no live updates
    assert shown[0]["data"]["text/plain"] == result.to_text()
    assert shown[0]["metadata"]["loom"]["run_id"] == result.run_id


def test_cell_magic_takes_the_body_as_the_prompt(ip: InteractiveShell) -> None:
    agent = scripted_agent(ip, ["ok"])
    body = "First line.\n\n  Second line, indented.\n"
    with capture_output():
        ip.run_cell_magic("loom", "run -a agent -o r", body)
    assert user_texts(agent.model.requests[0]) == [body.strip()]


def test_line_prompt_is_kept_verbatim(ip: InteractiveShell) -> None:
    agent = scripted_agent(ip, ["ok"])
    with capture_output():
        ip.run_line_magic("loom", """run -a agent What's "this"?  It's $HOME -- and -x""")
    assert user_texts(agent.model.requests[0]) == ["""What's "this"?  It's $HOME -- and -x"""]


def test_a_prompt_ending_in_a_question_mark_is_run_not_help(ip: InteractiveShell) -> None:
    agent = scripted_agent(ip, ["ok"])
    with capture_output():
        result = ip.run_cell("x = 1\n%loom run -a agent -o r What is the weather in Paris?\n")
    assert result.success, result.error_in_exec
    assert user_texts(agent.model.requests[0]) == ["What is the weather in Paris?"]
    assert ip.transform_cell("%loom?\n") == "get_ipython().run_line_magic('pinfo', '%loom')\n"


def test_a_question_in_the_cell_that_loads_the_extension_is_run_not_help(
        ip: InteractiveShell) -> None:
    # The whole cell is transformed before %load_ext runs: IPython has already made the line a
    # help request on "blue"; the loaded extension recognises it and runs the line.
    agent = scripted_agent(ip, ["ok", "again"])
    ip.extension_manager.unload_extension("loom_nb")
    with capture_output() as captured:
        result = ip.run_cell("%load_ext loom_nb\n%loom run -a agent -o r Why is the sky blue?\n"
                             "%loom run -a agent -o r2 And blue?\n")
    assert result.success, result.error_in_exec
    assert [user_texts(r)[-1] for r in agent.model.requests] == ["Why is the sky blue?",
                                                                 "And blue?"]
    assert "Object `blue` not found" not in captured.stdout
    # Help on anything else is still help.
    with capture_output() as captured:
        assert ip.run_cell("blue = 3\nblue?\n").success
    assert "int" in captured.stdout
    ip.extension_manager.unload_extension("loom_nb")
    assert not any(type(m).__name__ == "_HelpOrLoom"
                   for m in ip.magics_manager.magics["line"].values())


def test_default_agent_via_loom_agent(ip: InteractiveShell, magics: LoomMagics) -> None:
    scripted_agent(ip, ["from the default"], name="helper")
    with capture_output() as captured:
        ip.run_line_magic("loom", "agent helper")
        ip.run_line_magic("loom", "run -o r hi")
    assert magics.default_agent == "helper"
    assert ip.user_ns["r"].output == "from the default"
    assert "helper" in captured.stdout


def test_setters_without_a_name_show_the_current_default(ip: InteractiveShell) -> None:
    scripted_agent(ip, ["x"])
    with capture_output() as captured:
        ip.run_line_magic("loom", "agent")
        ip.run_line_magic("loom", "session")
        ip.run_line_magic("loom", "agent agent")
        ip.run_line_magic("loom", "session notes")
        ip.run_line_magic("loom", "agent")
        ip.run_line_magic("loom", "session")
    lines = captured.stdout.splitlines()
    assert lines[0].startswith("Default agent: none")
    assert lines[1] == "Default session: one notebook session per agent"
    assert lines[-2:] == ["Default agent: agent", "Default session: notes"]
    ip.user_ns["n"] = 3
    with pytest.raises(UsageError, match="is an int, not a Session"):
        ip.run_line_magic("loom", "session n")


def test_the_default_agent_shown_is_the_one_loom_model_builds(
        ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOM_MODEL", "openai:gpt-5-mini")
    with capture_output() as captured:
        ip.run_line_magic("loom", "agent")
    assert captured.stdout.strip() == ("Default agent: an Agent on LOOM_MODEL=openai:gpt-5-mini "
                                       "(`%loom agent NAME` to use a variable)")
    scripted_agent(ip, ["x"])
    with capture_output() as captured:
        ip.run_line_magic("loom", "agent agent")
        ip.run_line_magic("loom", "agent")
    assert captured.stdout.splitlines()[-1] == "Default agent: agent"  # a named default wins


def test_loom_model_fallback(ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOM_MODEL", "nope:x")
    with pytest.raises(UsageError, match="Unknown model provider 'nope'"):
        ip.run_line_magic("loom", "run hello")
    monkeypatch.delenv("LOOM_MODEL")
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("loom", "run hello")
    message = str(info.value)
    assert "No agent to run" in message
    assert "-a NAME" in message and "%loom agent NAME" in message and "LOOM_MODEL" in message


def test_loom_model_builds_one_shared_agent(ip: InteractiveShell, magics: LoomMagics,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    script = Model.scripted(["one", "two"])
    monkeypatch.setenv("LOOM_MODEL", "scripted:env")
    monkeypatch.setattr(Model, "from_env", staticmethod(lambda *a, **k: script))
    with capture_output():
        ip.run_line_magic("loom", "run -o a first")
        ip.run_line_magic("loom", "run -o b second")
    assert ip.user_ns["a"].session_id == ip.user_ns["b"].session_id
    assert user_texts(script.requests[1]) == ["first", "second"]


# -- sessions --------------------------------------------------------------------------------------


def test_runs_of_one_agent_share_a_notebook_session(ip: InteractiveShell) -> None:
    agent = scripted_agent(ip, ["Paris is sunny.", "I said: sunny."])
    scripted_agent(ip, ["other"], name="other")
    with capture_output():
        ip.run_line_magic("loom", "run -a agent -o r1 Weather in Paris?")
        ip.run_cell_magic("loom", "run -a agent -o r2", "What did you say?")
        ip.run_line_magic("loom", "run -a other -o r3 hi")
    r1, r2, r3 = (ip.user_ns[n] for n in ("r1", "r2", "r3"))
    assert r1.session_id == r2.session_id != r3.session_id
    assert user_texts(agent.model.requests[1]) == ["Weather in Paris?", "What did you say?"]
    assert len(agent.model.requests[1].messages) == 3  # user, assistant, user


def test_session_variable(ip: InteractiveShell) -> None:
    agent = scripted_agent(ip, ["a", "b"])
    session = agent.session()
    ip.user_ns["chat"] = session
    with capture_output():
        ip.run_line_magic("loom", "run -s chat -o r1 one")
        ip.run_line_magic("loom", "run -a agent -s chat -o r2 two")
    assert ip.user_ns["r2"].session_id == session.id
    assert [m.text for m in session.messages] == ["one", "a", "two", "b"]


def test_session_id_is_opened_on_the_agent(ip: InteractiveShell) -> None:
    agent = scripted_agent(ip, ["a", "b", "c"])
    with capture_output():
        ip.run_line_magic("loom", "run -a agent -s notes -o r1 one")
        ip.run_line_magic("loom", "run -a agent -o r2 elsewhere")
        ip.run_line_magic("loom", "run -a agent -s notes -o r3 two")
    assert ip.user_ns["r1"].session_id == ip.user_ns["r3"].session_id == "notes"
    assert ip.user_ns["r2"].session_id != "notes"
    assert user_texts(agent.model.requests[2]) == ["one", "two"]
    reopened = agent.session(SessionConfig(id="notes"))
    assert [m.text for m in reopened.messages] == ["one", "a", "two", "c"]


def test_default_session(ip: InteractiveShell, magics: LoomMagics) -> None:
    scripted_agent(ip, ["a", "b"])
    with capture_output():
        ip.run_line_magic("loom", "session project")
        ip.run_line_magic("loom", "run -a agent -o r1 one")
        ip.run_line_magic("loom", "run -a agent -o r2 two")
    assert magics.default_session == "project"
    assert ip.user_ns["r1"].session_id == ip.user_ns["r2"].session_id == "project"


def test_session_of_another_agent_is_refused(ip: InteractiveShell) -> None:
    scripted_agent(ip, ["a"])
    other = scripted_agent(ip, ["b"], name="other")
    ip.user_ns["chat"] = other.session()
    with pytest.raises(UsageError, match="belongs to the agent"):
        ip.run_line_magic("loom", "run -a agent -s chat hi")
    ip.user_ns["not_a_session"] = 42
    with pytest.raises(UsageError, match="is an int, not a Session"):
        ip.run_line_magic("loom", "run -a agent -s not_a_session hi")


# -- interpolation ---------------------------------------------------------------------------------


def test_interpolation_only_for_defined_names(ip: InteractiveShell) -> None:
    agent = scripted_agent(ip, ["ok", "ok", "ok"])
    ip.user_ns["city"] = "Paris"
    ip.user_ns["days"] = 3
    with capture_output():
        ip.run_line_magic(
            "loom", 'run -a agent Weather in {city} for {days} days as {"unit": "C"} {missing}')
        ip.run_cell_magic(
            "loom", "run -a agent", 'Plan {days} days in {city}.\nJSON: {"a": {"b": 1}}\n{ city }')
        ip.run_line_magic("loom", "run -a agent --no-interpolate Keep {city}")
    prompts = [user_texts(r)[-1] for r in agent.model.requests]
    assert prompts == [
        'Weather in Paris for 3 days as {"unit": "C"} {missing}',
        'Plan 3 days in Paris.\nJSON: {"a": {"b": 1}}\n{ city }',
        "Keep {city}",
    ]


def test_interpolate_function() -> None:
    assert interpolate("{a}{b}{{a}}{1}{a.b}", {"a": 1}) == "1{b}{1}{1}{a.b}"


# -- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("line", "cell", "message"), [
    ("run -a nobody hi", None, "There is no variable named 'nobody'"),
    ("run -a number hi", None, "'number' is an int, not an Agent"),
    ("run -a agent", None, "The prompt is empty"),
    ("run -a agent {blank}", None, "The prompt is empty"),
    ("run -a agent", "\n  \n", "The prompt is empty"),
    ("run -a agent -o 1x hi", None, "--out takes a variable name"),
    ("run -a agent --bogus hi", None, "Unknown option '--bogus'"),
    ("run -a", None, "Option -a needs a name"),
    ("run -a agent on the line", "and in the body", "either on the %%loom line or in the cell"),
    ("fly away", None, "Unknown %loom command 'fly'"),
    ("agent nobody", None, "There is no variable named 'nobody'"),
    ("agent", "body", "takes no cell body"),
])
def test_bad_input_is_a_short_usage_error(ip: InteractiveShell, line: str, cell: str | None,
                                          message: str) -> None:
    scripted_agent(ip, ["never used"])
    ip.user_ns["number"] = 7
    ip.user_ns["blank"] = "  "
    with pytest.raises(UsageError) as info:
        if cell is None:
            ip.run_line_magic("loom", line)
        else:
            ip.run_cell_magic("loom", line, cell)
    assert message in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_unknown_agent_names_the_agents_that_exist(ip: InteractiveShell) -> None:
    scripted_agent(ip, ["x"], name="writer")
    with pytest.raises(UsageError, match="Agents defined here: writer"):
        ip.run_line_magic("loom", "run -a wirter hi")


def test_usage_error_renders_as_one_line(ip: InteractiveShell) -> None:
    with capture_output() as captured:
        result = ip.run_cell("%loom run -a nobody hi")
    assert isinstance(result.error_in_exec, UsageError)  # the cell fails: Run all stops here
    assert captured.stderr.strip().startswith("UsageError: There is no variable named 'nobody'")
    assert "Traceback" not in captured.stderr + captured.stdout


@pytest.mark.parametrize("line", ["", "help", "--help"])
def test_help(ip: InteractiveShell, line: str) -> None:
    with capture_output() as captured:
        ip.run_line_magic("loom", line)
    assert "%loom run [options] PROMPT" in captured.stdout
    assert "--no-stream" in captured.stdout


def test_parse_command() -> None:
    command = parse_command("run --agent=bot -s s1 --out res --no-stream -- -5 degrees? {x}")
    assert (command.agent, command.session, command.out) == ("bot", "s1", "res")
    assert not command.stream
    assert command.prompt == "-5 degrees? {x}"
    assert parse_command("run -a bot", "  body\n").prompt == "body"
    with pytest.raises(CommandError):
        parse_command("run --no-stream=1 hi")


# -- displays --------------------------------------------------------------------------------------


async def _slow_words(request: ModelRequest) -> AsyncIterator[str]:
    for word in "one two three four five six seven eight".split():
        await asyncio.sleep(0.05)
        yield word + " "


def test_live_display_updates_and_ends_in_the_final_render(ip: InteractiveShell,
                                                           live: None) -> None:
    ip.user_ns["agent"] = Agent(Model.function(_slow_words))
    with capture_output() as captured:
        ip.run_line_magic("loom", "run -a agent -o r Count")
    result: RunResult = ip.user_ns["r"]
    first, *updates = displays(captured)
    display_id = first["transient"]["display_id"]
    assert not first["update"] and first["data"]["text/plain"].startswith("Run running")
    assert updates
    assert all(u["update"] and u["transient"]["display_id"] == display_id for u in updates)
    partial = [u["data"]["text/plain"] for u in updates[:-1]]
    # Throttled: fewer redraws than deltas, and the text grows between them.
    assert 1 <= len(partial) < 8
    assert any("one two" in p and "eight" not in p for p in partial)
    data, metadata = result._repr_mimebundle_()
    assert updates[-1]["data"] == data
    assert updates[-1]["metadata"] == metadata
    assert metadata["loom"]["run_id"] == result.run_id
    # Token counts are the kernel's estimate; the rest of the final text is fixed.
    assert re.fullmatch(r"Run completed · 1 turn · 0 tool calls · \d+ tokens \(\d+ in, \d+ out\) · "
                        r"function:function\none two three four five six seven eight",
                        updates[-1]["data"]["text/plain"])


def test_tool_steps_are_drawn_while_the_tool_works(ip: InteractiveShell, live: None) -> None:
    # A step inside the throttle's interval is drawn at the interval's end: the call shows
    # while the (slow) tool works, before its result.
    def lookup(city: str) -> str:
        """Look a city up."""
        threading.Event().wait(0.5)
        return f"{city}: 21 C"

    scripted_agent(ip, [{"tool": "lookup", "args": {"city": "Oslo"}}, "Done."], tools=[lookup])
    with capture_output() as captured:
        ip.run_line_magic("loom", "run -a agent go")
    texts = [d["data"]["text/plain"] for d in displays(captured)]
    assert any(t.startswith("Run running") and '→ lookup(city="Oslo")' in t
               and "Oslo: 21 C" not in t for t in texts)
    assert any(t.startswith("Run running") and "← Oslo: 21 C" in t for t in texts)
    assert texts[-1].startswith("Run completed")


@pytest.mark.parametrize("how", ["--no-stream", "LOOM_LIVE=0"])
def test_live_updates_off(ip: InteractiveShell, live: None, monkeypatch: pytest.MonkeyPatch,
                          how: str) -> None:
    ip.user_ns["agent"] = Agent(Model.function(_slow_words))
    if how == "LOOM_LIVE=0":
        monkeypatch.setenv("LOOM_LIVE", "0")
    flag = how if how.startswith("--") else ""
    with capture_output() as captured:
        ip.run_line_magic("loom", f"run -a agent {flag} -o r Count")
    shown = displays(captured)
    assert len(shown) == 1 and not shown[0]["update"]
    assert shown[0]["data"]["text/plain"] == ip.user_ns["r"].to_text()


def test_failed_run_is_rendered_not_raised(ip: InteractiveShell) -> None:
    scripted_agent(ip, ["only one"])
    with capture_output() as captured:
        ip.run_line_magic("loom", "run -a agent -o r1 first")
        ip.run_line_magic("loom", "run -a agent -o r2 second")
    result = ip.user_ns["r2"]
    assert result.status == "failed"
    text = displays(captured)[-1]["data"]["text/plain"]
    assert text.startswith("Run failed")
    assert "failed: The scripted model has no turn left" in text
    assert displays(captured)[-1]["metadata"]["loom"]["status"] == "failed"


def test_tool_exception_goes_back_to_the_model(ip: InteractiveShell) -> None:
    def divide(a: int, b: int) -> float:
        """Divide a by b."""
        return a / b

    agent = scripted_agent(ip, [{"tool": "divide", "args": {"a": 1, "b": 0}},
                                "I cannot divide by zero."], tools=[divide])
    with capture_output() as captured:
        ip.run_line_magic("loom", "run -a agent -o r 1/0?")
    result = ip.user_ns["r"]
    assert result.status == "completed"
    assert result.tool_calls[0].is_error
    tool_message = agent.model.requests[1].messages[-1]
    assert "ZeroDivisionError" in tool_message.parts[0].content
    assert "✗ Tool 'divide' raised ZeroDivisionError: division by zero" in \
        displays(captured)[-1]["data"]["text/plain"]


def test_interrupt_cancels_the_run_and_keeps_the_session(ip: InteractiveShell, live: None) -> None:
    async def press_stop() -> str:
        """Stands in for the notebook's stop button: SIGINT to the cell's (main) thread."""
        # A scripted run reaches this tool in microseconds; give the cell's thread the time to
        # start waiting for the run, where a real interrupt finds it.
        await asyncio.sleep(0.2)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        await asyncio.sleep(30)
        return "never"

    agent = scripted_agent(ip, [{"tool": "press_stop", "args": {}}, "after the interrupt"],
                           tools=[press_stop])
    with capture_output() as captured, pytest.raises(KeyboardInterrupt, match="run was cancelled"):
        ip.run_line_magic("loom", "run -a agent -o r stop me")
    assert ip.user_ns["r"].status == "cancelled"  # -o binds a stopped run too
    final = displays(captured)[-1]
    assert final["update"] and final["data"]["text/plain"].startswith("Run cancelled")
    assert final["metadata"]["loom"]["status"] == "cancelled"
    # The notebook session stays usable: the next run continues from a valid history.
    with capture_output():
        ip.run_line_magic("loom", "run -a agent -o r again")
    assert ip.user_ns["r"].output == "after the interrupt"
    assert user_texts(agent.model.requests[-1]) == ["stop me", "again"]


def test_an_interrupt_keeps_the_streamed_answer_on_screen_and_in_the_result(
        ip: InteractiveShell, live: None) -> None:
    async def talk(request: ModelRequest) -> AsyncIterator[str]:
        yield "## Partial\n\nThe first **half** of"
        await asyncio.sleep(0.3)  # the cell's thread is waiting for the run by now
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        await asyncio.sleep(30)
        yield " never streamed"

    ip.user_ns["agent"] = Agent(Model.function(talk))
    with capture_output() as captured, pytest.raises(KeyboardInterrupt, match="cut off"):
        ip.run_line_magic("loom", "run -a agent -o r talk")
    result = ip.user_ns["r"]
    assert (result.status, result.output) == ("cancelled", "## Partial\n\nThe first **half** of")
    final = displays(captured)[-1]["data"]
    assert "The first **half** of\n[cut off here: the run was stopped]" in final["text/plain"]
    assert "<strong>half</strong>" in final["text/html"] and "✂ cut off here" in final["text/html"]
    assert "never streamed" not in final["text/html"]


# -- the extension ---------------------------------------------------------------------------------


def test_unload_and_reload(ip: InteractiveShell) -> None:
    ip.extension_manager.unload_extension("loom_nb")
    assert "loom" not in ip.magics_manager.magics["line"]
    ip.extension_manager.load_extension("loom_nb")
    assert "loom" in ip.magics_manager.magics["line"] and "loom" in ip.magics_manager.magics["cell"]


def test_import_is_light_and_load_ext_works_in_a_fresh_process(tmp_path: Any) -> None:
    code = """
import sys
import loom_nb
heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('IPython', 'ipywidgets', 'pandas'))
print('before', heavy)
from IPython.core.interactiveshell import InteractiveShell
from loom_nb import Agent, Model
ip = InteractiveShell.instance()
ip.run_line_magic('load_ext', 'loom_nb')
ip.user_ns['agent'] = Agent(Model.scripted(['hi from a fresh process']))
ip.run_line_magic('loom', 'run -a agent -o r hello')
print('after', ip.user_ns['r'].output)
"""
    env = {**os.environ, "IPYTHONDIR": str(tmp_path)}
    env.pop("LOOM_MODEL", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "before []" in lines
    assert "after hi from a fresh process" in lines



def test_the_sanitize_file_installs_with_the_package() -> None:
    import re

    from loom_nb.notebook import SANITIZE_FILE

    pairs = re.findall(r"^regex: (.*)$\n^replace: (.*)$", SANITIZE_FILE.read_text(), re.M)
    text = "run_0123456789abcdef in ses_0123456789abcdef at 2026-11-24T10:07:00+00:00 took 12.5 ms"
    for regex, replace in pairs:
        text = re.sub(regex, replace, text)
    assert text == "run_ID in ses_ID at TIMESTAMP took DURATION"


def test_the_report_widget_redraws_for_the_score_grouping_and_reducer_chosen() -> None:
    import loom_nb
    from loom_nb.notebook import ReportView
    from loom_nb.scoring import exact, includes

    answers = iter(["4", "five", "4", "5", "four", "5"] * 2)
    agent = Agent(Model.function(lambda request: next(answers)))
    tasks = [{"id": "a", "input": "2+2", "target": "4", "level": "easy"},
             {"id": "b", "input": "2+3", "target": "5", "level": "hard"}]
    df = loom_nb.evaluate(agent, tasks, scorers=[exact(), includes()], epochs=3, progress=False,
                          concurrency=1)
    view = ReportView(df)
    assert [o for o in view._score.options] == ["exact", "includes"]
    assert view._by.options == ("(none)", "metadata_level")
    assert "pass@2" in view._reducer.options and "pass@4" not in view._reducer.options
    first = view._html.value
    view._by.value = "metadata_level"
    assert "By metadata_level" in view._html.value and view._html.value != first
    view._reducer.value = "pass@2"
    assert view.report.summary["mean"].tolist() != [] and view.note == ""
    data, _ = view._repr_mimebundle_()
    assert data["text/html"] == view.report.html and data["text/plain"].startswith("Report(")
    with pytest.raises(ConfigError, match="reducer='best'"):
        ReportView(df, reducer="best")


def test_loom_report_shows_the_report_of_an_evaluation_frame(ip: InteractiveShell) -> None:
    import loom_nb
    from loom_nb.scoring import exact

    agent = Agent(Model.function(lambda request: "4"))
    ip.user_ns["df"] = loom_nb.evaluate(agent, [{"input": "2+2", "target": "4"},
                                                {"input": "2+3", "target": "5"}],
                                        scorers=[exact()], progress=False)
    with capture_output() as captured:
        ip.run_line_magic("loom", "report -o rep df")
    shown = displays(captured)
    assert len(shown) == 1 and "<svg" in shown[0]["data"]["text/html"]
    assert "Failing samples (1 of 2)" in shown[0]["data"]["text/html"]
    assert ip.user_ns["rep"].report.summary["mean"].tolist() == [0.5]
    assert "application/vnd.jupyter.widget-view+json" in shown[0]["data"]
    with pytest.raises(UsageError, match="no variable 'nothing'"):
        ip.run_line_magic("loom", "report nothing")
    with pytest.raises(UsageError, match="report NAME"):
        ip.run_line_magic("loom", "report")
