"""Energy: from FLOPs to kilowatt-hours, with every assumption written down.

The GPT-3 paper gives compute, not energy. Its §6.3 says that "training the GPT-3 175B consumed
several thousand petaflop/s-days of compute during pre-training" (Table D.1: 3,640, i.e.
3.14e23 FLOPs, :data:`minigpt.scaling.GPT3_175B_FLOPS`), and that the trained model is cheap to
use: "even with the full GPT-3 175B, generating 100 pages of content from a trained model can
cost on the order of 0.4 kW-hr, or only a few cents in energy costs" (:data:`GPT3_100_PAGES_KWH`).
It states no GPU count, training time or power draw.

Turning FLOPs into energy takes three assumptions, each a parameter of
:func:`training_energy_kwh`:

1. **sustained FLOP/s per GPU**: what the GPU actually achieves on the model, not its peak.
   The default 28 TFLOP/s for a V100 is the third-party figure behind the popular "355 GPU-years"
   (:func:`minigpt.scaling.lambda_v100_estimate`), 22 % of the V100's 125 TFLOP/s fp16 peak;
2. **watts per GPU**: 300 W, the V100 SXM2's rated board power. The GPU is not all of a server
   (CPUs, memory, network also draw power), so this leans low;
3. **PUE** (power usage effectiveness): the data centre's total power over its IT power,
   cooling included; 1.1 is an efficient cloud data centre.

With these, GPT-3 175B's training takes about 1,000 MWh (:func:`gpt3_training_energy`).
Patterson et al. (2021), with information from the training's operators, estimated 1,287 MWh
and 552 tonnes of CO2-equivalent (:data:`PATTERSON_GPT3_MWH`): the same order of magnitude.

    >>> round(training_energy_kwh(3.6e18, 1e12, watts_per_gpu=1000, pue=1.0))
    1000
    >>> round(gpt3_training_energy()["mwh"])
    1028
"""

from __future__ import annotations

from minigpt.scaling import GPT3_175B_FLOPS, SECONDS_PER_YEAR

__all__ = [
    "GPT3_100_PAGES_KWH",
    "JOULES_PER_KWH",
    "PATTERSON_GPT3_MWH",
    "PATTERSON_GPT3_TCO2E",
    "V100_SUSTAINED_FLOPS",
    "V100_WATTS",
    "generation_energy_kwh",
    "gpt3_training_energy",
    "pages_to_tokens",
    "training_energy_kwh",
]

JOULES_PER_KWH = 3.6e6
#: GPT-3's §6.3: generating 100 pages with the 175B model costs "on the order of 0.4 kW-hr".
GPT3_100_PAGES_KWH = 0.4
#: Patterson et al. (2021), "Carbon Emissions and Large Neural Network Training": their
#: estimate of GPT-3 175B's training energy (MWh) and emissions (tonnes CO2e).
PATTERSON_GPT3_MWH = 1287.0
PATTERSON_GPT3_TCO2E = 552.0
#: Assumptions, not measurements: a V100's sustained training throughput (the Lambda Labs
#: figure of :func:`minigpt.scaling.lambda_v100_estimate`) and its rated board power (SXM2).
V100_SUSTAINED_FLOPS = 28e12
V100_WATTS = 300.0


def _positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")


def training_energy_kwh(
    flops: float,
    flops_per_second_per_gpu: float,
    watts_per_gpu: float,
    pue: float = 1.1,
) -> float:
    """Energy in kWh to compute ``flops`` on GPUs that sustain ``flops_per_second_per_gpu``
    each while drawing ``watts_per_gpu``, in a data centre of power usage effectiveness
    ``pue`` (>= 1).

    ``kWh = flops / flops_per_second_per_gpu x watts_per_gpu x pue / 3.6e6``: GPU-seconds
    times power. The number of GPUs does not matter (more GPUs, shorter run).

    >>> round(training_energy_kwh(3.14e23, 28e12, 300, pue=1.1))
    1027976
    >>> training_energy_kwh(1e18, 1e12, 300, pue=0.9)
    Traceback (most recent call last):
    ...
    ValueError: pue must be >= 1 (total facility power / IT power), got 0.9
    """
    if isinstance(flops, bool) or not isinstance(flops, int | float) or not flops >= 0:
        raise ValueError(f"flops must be a number >= 0, got {flops!r}")
    _positive("flops_per_second_per_gpu", flops_per_second_per_gpu)
    _positive("watts_per_gpu", watts_per_gpu)
    if isinstance(pue, bool) or not isinstance(pue, int | float) or not pue >= 1:
        raise ValueError(f"pue must be >= 1 (total facility power / IT power), got {pue!r}")
    gpu_seconds = flops / flops_per_second_per_gpu
    return gpu_seconds * watts_per_gpu * pue / JOULES_PER_KWH


def gpt3_training_energy(
    flops: float = GPT3_175B_FLOPS,
    flops_per_second_per_gpu: float = V100_SUSTAINED_FLOPS,
    watts_per_gpu: float = V100_WATTS,
    pue: float = 1.1,
) -> dict[str, float]:
    """GPT-3 175B's training energy under stated assumptions, next to Patterson et al.'s.

    Returns ``{"kwh", "mwh", "gpu_years", "patterson_mwh", "ratio_to_patterson"}``.

    >>> e = gpt3_training_energy()
    >>> round(e["gpu_years"], 1), e["patterson_mwh"], round(e["ratio_to_patterson"], 2)
    (355.6, 1287.0, 0.8)
    """
    kwh = training_energy_kwh(flops, flops_per_second_per_gpu, watts_per_gpu, pue)
    return {"kwh": kwh, "mwh": kwh / 1000,
            "gpu_years": flops / flops_per_second_per_gpu / SECONDS_PER_YEAR,
            "patterson_mwh": PATTERSON_GPT3_MWH,
            "ratio_to_patterson": kwh / 1000 / PATTERSON_GPT3_MWH}


def pages_to_tokens(pages: float, words_per_page: float = 500, tokens_per_word: float = 4 / 3
                    ) -> float:
    """Tokens in ``pages`` pages of English: 500 words a page, 4/3 GPT-2 tokens a word (both
    rules of thumb, not figures from the paper).

    >>> round(pages_to_tokens(100))
    66667
    """
    for name, value in (("pages", pages), ("words_per_page", words_per_page),
                        ("tokens_per_word", tokens_per_word)):
        _positive(name, value)
    return pages * words_per_page * tokens_per_word


def generation_energy_kwh(
    n_tokens: float,
    n_params: float,
    flops_per_second_per_gpu: float = V100_SUSTAINED_FLOPS,
    watts_per_gpu: float = V100_WATTS,
    pue: float = 1.1,
) -> float:
    """Energy to generate ``n_tokens`` with a model of ``n_params`` parameters, at the forward
    pass's ``2 N`` FLOPs per token (attention and the prompt left out).

    Decoding one sequence at a time is limited by memory bandwidth, not arithmetic, so real
    throughput is usually far below the training figure used by default; the result is a
    lower bound under these assumptions. For 100 pages from the 175B model it is about 0.08
    kWh, below the paper's "order of 0.4 kW-hr", which implies about a fifth of the
    default throughput.

    >>> round(generation_energy_kwh(pages_to_tokens(100), 174.6e9), 3)
    0.076
    """
    _positive("n_tokens", n_tokens)
    _positive("n_params", n_params)
    return training_energy_kwh(2.0 * n_params * n_tokens, flops_per_second_per_gpu,
                               watts_per_gpu, pue)
