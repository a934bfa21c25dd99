"""lucky_litellm inside a LiteLLM proxy: tiers, user experiments and strategies for any OpenAI client.

Add to the proxy's ``config.yaml`` (full example: ``configs/proxy.yaml``)::

    model_list:
      - model_name: "tier:*"
        litellm_params: {model: "lucky/tier:*", num_retries: 0,
                         input_cost_per_token: 0, output_cost_per_token: 0}
      - model_name: "user:*"
        litellm_params: {model: "lucky/user:*", num_retries: 0,
                         input_cost_per_token: 0, output_cost_per_token: 0}
    litellm_settings:
      custom_provider_map: [{provider: lucky, custom_handler: lucky_litellm.proxy.handler}]
      callbacks: ["lucky_litellm.proxy.hook"]

and point ``LUCKY_MODELS_CONFIG`` at a ``models.yaml`` (providers, tiers, ``users:``, ``rollout:``).

The parts, one concern each:

* `hook` (`hook.LuckyHook`): identity, validation, rollout decision, route; answers and errors;
* `handler` (`provider.LuckyProvider`, provider ``lucky``): the engine route;
* `context`: the per-request decision both share; `identity`: who may run whose experiments;
* `routes`: the deployment route; `relay`: streams; `errors`: statuses and bodies;
* `setup`: the registry the proxy serves (models file, environment on top);
* `launcher`: a real proxy process for tests, benchmarks and demos.

``lucky_litellm.proxy.hook`` and ``lucky_litellm.proxy.handler`` name the two instances below
(LiteLLM imports ``lucky_litellm.proxy`` and reads the attribute), as they always have.
"""

from __future__ import annotations

from .context import CONTEXT_KEY, ProxySettings, RequestContext
from .hook import LuckyHook
from .provider import LuckyProvider
from .setup import install_models

__all__ = ["CONTEXT_KEY", "LuckyHook", "LuckyProvider", "ProxySettings", "RequestContext", "handler", "hook"]

handler = LuckyProvider()
hook = LuckyHook()  # replaces the submodule of the same name as this package's attribute, on purpose
install_models()  # load LUCKY_MODELS_CONFIG now: a broken config stops the proxy at startup
