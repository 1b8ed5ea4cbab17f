"""splitedge.simulations: study split computing over emulated networks on one machine.

Nothing is imported here. Public API, by module (``splitedge-sim`` is
:mod:`~splitedge.simulations.cli`):

- :mod:`~splitedge.simulations.traces` and :mod:`~splitedge.simulations.trace_formats`:
  ``BandwidthTrace`` (piecewise-constant rate), seeded generators, Mahimahi / CSV /
  integer-per-line files.
- :mod:`~splitedge.simulations.link`: ``EmulatedLink``, a user-space relay whose bytes
  follow a trace; :mod:`~splitedge.simulations.netns`: the same with network namespaces
  and ``tc`` (root).
- :mod:`~splitedge.simulations.scenario`: ``Scenario`` files (TOML/YAML), validated;
  :mod:`~splitedge.simulations.runner`: ``run_scenario`` for real (edge process, links,
  clients); :mod:`~splitedge.simulations.des`: the discrete-event simulator of the same
  scenario, with :mod:`~splitedge.simulations.des_adaptive` for the adaptive policy.
- :mod:`~splitedge.simulations.policies`: the baselines (rate rule, Neurosurgeon,
  oracle, fixed) and their protocol; :mod:`~splitedge.simulations.profiles`:
  ``CostProfile`` measured from the real system.
- :mod:`~splitedge.simulations.report`: per-frame rows, summaries (mAP50 and
  mAP50_sla), plots; :mod:`~splitedge.simulations.demo`: the README's demo;
  :mod:`~splitedge.simulations.processes`: edge server processes;
  :mod:`~splitedge.simulations.record_telemetry`: the fleet's telemetry to a file.
"""
