"""Re-make ``providers.jsonl``, the recording that notebook 08 replays when LOOM_MODEL is not set.

The shipped recording was made by this script, offline, with a *stand-in*: a Python function
(``Model.function``) in place of a real model, because no API key was available where the
notebooks were built. The stand-in's identifier, ``function:stand-in``, is recorded in the file,
and the notebook shows it.

To record a real model instead, run from the ``notebooks`` folder with a key set::

    ANTHROPIC_API_KEY=... python recordings/record_providers.py anthropic:claude-sonnet-5

The agent and the prompts below must stay those of notebook 08: the replay compares every request
with the recorded one and fails with ReplayMismatchError where they differ.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from loom_nb import Agent, Model, tool

RECORDING = Path(__file__).with_name("providers.jsonl")
INSTRUCTIONS = "You answer questions about the weather. Use the tools; be brief."
PROMPTS = ["What is the weather in Paris?", "Should I take an umbrella in Oslo?"]


@tool
def get_weather(city: str) -> str:
    """Get the current weather for a city.

    Args:
        city: The name of the city, for example "Paris".
    """
    forecasts = {"Paris": "sunny, 21 °C", "Oslo": "light rain, 9 °C"}
    if city not in forecasts:
        raise ValueError(f"no forecast for {city!r}")
    return forecasts[city]


def stand_in(request):
    """What a real model would plausibly do: look the weather up, then answer in a sentence."""
    last = request.messages[-1]
    city = re.search(r"Paris|Oslo", request.messages[0].text).group()
    if last.role == "user":
        return {"tool": "get_weather", "args": {"city": city}}
    forecast = last.parts[0].content
    if "rain" in forecast:
        return f"Yes, take an umbrella: {forecast} in {city}."
    return f"It is {forecast} in {city}."


def main() -> None:
    live = Model.from_string(sys.argv[1]) if len(sys.argv) > 1 else Model.function(stand_in, name="stand-in")
    model = Model.record(live, RECORDING)
    agent = Agent(model, INSTRUCTIONS, tools=[get_weather])
    for prompt in PROMPTS:  # each prompt is a separate run with no history, as in the notebook
        print(agent.run_sync(prompt).output)
    print(f"{model.exchanges} exchanges recorded to {RECORDING}")


if __name__ == "__main__":
    main()
