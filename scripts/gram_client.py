"""TRL reward functions backed by a running `gram serve` (Python standard library only).

    from gram_client import gram_reward, async_gram_reward
    trainer = GRPOTrainer(model=..., reward_funcs=[gram_reward], train_dataset=ds, ...)

TRL's GRPOTrainer calls `reward_func(prompts=..., completions=..., **columns)`. Prompts and
completions are strings (a plain-text dataset) or chat messages (a conversational dataset:
each prompt a list of `{"role", "content"}` messages, each completion
`[{"role": "assistant", "content": ...}]`); gram reads both as they are.

* With a `reference` column (e.g. the policy's greedy answer), each completion's reward is the
  log-odds that it beats its reference (`POST /reward`, rows `{prompt, response, reference}`).
* Without one, the completions of the same prompt (TRL's `num_generations` of them) are ranked
  round-robin against each other: the reward is the centred Bradley-Terry log-strength within
  the group, a GRPO-style relative reward that sums to 0 per prompt (rows `{prompt, responses}`).

`async_gram_reward` is the same as an `async def`, which TRL awaits concurrently with other
asynchronous reward functions. The server address comes from `GRAM_URL` (default
`http://127.0.0.1:8000`), the API key from `GRAM_API_KEY`.
"""

import asyncio
import json
import os
import urllib.error
import urllib.request

__all__ = ["gram_reward", "async_gram_reward", "GramError"]


class GramError(RuntimeError):
    """The server answered an error: its status and its message."""


def _post(path, body, url=None, api_key=None, timeout=600.0):
    url = (url or os.environ.get("GRAM_URL", "http://127.0.0.1:8000")).rstrip("/")
    api_key = api_key or os.environ.get("GRAM_API_KEY")
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(
        url + path, data=json.dumps(body).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return json.load(reply)
    except urllib.error.HTTPError as error:
        message = error.read().decode(errors="replace")
        try:
            message = json.loads(message)["error"]
        except (ValueError, KeyError, TypeError):
            pass
        raise GramError(f"gram serve answered {error.code} to {path}: {message}") from None


def _rows(prompts, completions, reference):
    """The /reward rows for one call, and for each completion its (row, position) in them."""
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    if reference is not None:
        rows = [
            {"prompt": p, "response": c, "reference": r}
            for p, c, r in zip(prompts, completions, reference, strict=True)
        ]
        return rows, [(i, None) for i in range(len(rows))]
    rows, where, by_prompt = [], [], {}
    for prompt, completion in zip(prompts, completions):
        key = json.dumps(prompt, sort_keys=True)
        if key not in by_prompt:
            by_prompt[key] = len(rows)
            rows.append({"prompt": prompt, "responses": []})
        row = by_prompt[key]
        where.append((row, len(rows[row]["responses"])))
        rows[row]["responses"].append(completion)
    return rows, where


def gram_reward(prompts, completions, reference=None, *, url=None, api_key=None, **kwargs):
    """One reward per completion (log-odds; see the module docstring)."""
    rows, where = _rows(prompts, completions, reference)
    body = {"rows": rows, "scale": "log-odds", "reference": "round-robin"}
    results = _post("/reward", body, url=url, api_key=api_key)["results"]
    return [
        results[row]["reward"] if k is None else results[row]["rewards"][k] for row, k in where
    ]


async def async_gram_reward(prompts, completions, reference=None, *, url=None, api_key=None, **kwargs):
    """`gram_reward` as a coroutine (the HTTP call runs on a worker thread)."""
    return await asyncio.to_thread(
        gram_reward, prompts, completions, reference, url=url, api_key=api_key
    )
