"""The cyclones of the synthetic sample data: their paths, sizes and intensities.

Two difficulties. ``easy`` repeats a fixed scenario every ``BLOCK_STEPS`` steps, jittered in
time, place and intensity by (seed, year, member, block), with on purpose a track across 0°,
a high-latitude track, a close pair (farther apart than the default ``suppress_km``), a pair
of crossing tracks and Southern Hemisphere tracks. ``hard`` draws independent random storms
of varied size (300-700 km), intensity (3-12e-5 s-1), speed (4-18 m/s eastward, drifting
poleward) and life (8-32 steps) in both storm belts, about one in four with a partner
550-850 km away (closer than ``suppress_km``), and about one in four fading to a fifth of its
strength for one step (below any sensible threshold: the tracker must bridge the gap).
The truth keeps every step of every storm, faded ones included.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from clusterfarm.analysis.geo import FloatArray

Difficulty = Literal["easy", "hard"]
DIFFICULTIES: tuple[str, ...] = ("easy", "hard")
BLOCK_STEPS = 40
# how strong a storm stays in the step it fades
FADE_FACTOR = 0.2


@dataclass(frozen=True)
class Vortex:
    """A cyclone on a smooth path in lat/lon, growing over its first 3 steps, decaying over
    its last 3."""

    name: str
    start: int
    steps: int
    lat0: float
    lon0: float
    dlat: float  # degrees per step
    dlon: float
    zeta0: float  # peak relative vorticity magnitude (s-1)
    radius_km: float
    turn_lat: float = 0.0  # change of dlat per step: tracks bend poleward or recurve
    turn_lon: float = 0.0
    fade_step: int = -1  # step (from the start) at which the storm fades, -1: never

    def path(self) -> tuple[np.ndarray, FloatArray, FloatArray]:
        """Time steps and centre positions of the vortex."""
        k = np.arange(self.steps)
        lat = self.lat0 + self.dlat * k + 0.5 * self.turn_lat * k**2
        lon = self.lon0 + self.dlon * k + 0.5 * self.turn_lon * k**2
        return self.start + k, lat, np.mod(lon, 360.0)

    def vorticity(self) -> FloatArray:
        """Signed peak vorticity at each step: cyclones turn clockwise in the south."""
        k = np.arange(self.steps)
        envelope = np.minimum(1.0, np.minimum(k + 1, self.steps - k) / 3.0)
        envelope[k == self.fade_step] *= FADE_FACTOR
        return np.sign(self.lat0) * self.zeta0 * envelope


# Groups of vortices jittered together, so a pair keeps its geometry. Steps are within a block.
_SCENARIO: tuple[tuple[Vortex, ...], ...] = (
    (Vortex("zero_crossing", 4, 16, 48.0, 336.0, 0.2, 3.0, 8e-5, 550.0, turn_lat=0.02),),
    (Vortex("high_latitude", 6, 14, 66.0, 190.0, 0.4, 2.0, 7e-5, 450.0),),
    (
        Vortex("close_pair_west", 10, 16, 44.0, 95.0, 0.25, 2.2, 7e-5, 450.0),
        Vortex("close_pair_east", 10, 16, 44.0, 116.0, 0.25, 2.2, 7e-5, 450.0),
    ),
    (
        Vortex("crossing_zonal", 8, 18, 38.0, 150.0, 0.0, 2.5, 8e-5, 500.0),
        Vortex("crossing_meridional", 18, 16, 28.0, 160.0, 1.25, 1.25, 8e-5, 500.0),
    ),
    (Vortex("southern", 3, 20, -45.0, 60.0, -0.2, 2.8, 9e-5, 550.0, turn_lat=-0.02),),
    (Vortex("southern_polar", 14, 18, -58.0, 250.0, -0.2, 3.2, 8e-5, 550.0),),
    (Vortex("tropical", 2, 20, 15.0, 300.0, 0.5, -1.5, 6e-5, 600.0, turn_lon=0.15),),
    (Vortex("atlantic", 18, 16, 40.0, 290.0, 0.5, 2.4, 8e-5, 550.0, turn_lat=0.03, turn_lon=0.1),),
)

SPECIAL_CASES: dict[str, tuple[str, ...]] = {
    "zero_crossing": ("zero_crossing",),
    "high_latitude": ("high_latitude",),
    "close_pair": ("close_pair_west", "close_pair_east"),
    "crossing_pair": ("crossing_zonal", "crossing_meridional"),
    "southern_hemisphere": ("southern", "southern_polar"),
}


def sample_vortices(
    year: int, member: int, n_steps: int, seed: int = 0, difficulty: Difficulty = "easy"
) -> list[Vortex]:
    """Return the vortices of one member-year."""
    if difficulty == "hard":
        return random_vortices(year, member, n_steps, seed)
    rng = np.random.default_rng([seed, year, member, 0])
    vortices = []
    for block_start in range(0, n_steps, BLOCK_STEPS):
        for group in _SCENARIO:
            delay = int(rng.integers(0, 3))
            dlat, dlon = rng.uniform(-2.0, 2.0), rng.uniform(-4.0, 4.0)
            for base in group:
                vortex = replace(
                    base,
                    start=block_start + base.start + delay,
                    lat0=base.lat0 + dlat,
                    lon0=base.lon0 + dlon,
                    zeta0=base.zeta0 * rng.uniform(0.8, 1.25),
                )
                if vortex.start + vortex.steps <= n_steps:
                    vortices.append(vortex)
    return vortices


# hard data: storms started per block, their ranges, and how often they pair or fade
HARD_STORMS_PER_BLOCK = 14
PAIR_SHARE = 0.25
FADE_SHARE = 0.25
_KM_PER_DEG = 111.2
_STEP_S = 6 * 3600.0


def random_vortices(year: int, member: int, n_steps: int, seed: int = 0) -> list[Vortex]:
    """Return independent random storms (and close partners) filling ``n_steps`` steps."""
    rng = np.random.default_rng([seed, year, member, 2])
    vortices: list[Vortex] = []
    for block_start in range(0, n_steps, BLOCK_STEPS):
        for k in range(HARD_STORMS_PER_BLOCK):
            lives = int(rng.integers(8, 33))
            start = block_start + int(rng.integers(0, BLOCK_STEPS))
            hemisphere = 1.0 if rng.random() < 0.5 else -1.0
            lat0 = hemisphere * rng.uniform(25.0, 62.0)
            speed_km = rng.uniform(4.0, 18.0) * _STEP_S / 1000.0
            dlon = speed_km / (_KM_PER_DEG * np.cos(np.radians(lat0)))
            storm = Vortex(
                name=f"storm_{block_start // BLOCK_STEPS}_{k}",
                start=start,
                steps=min(lives, n_steps - start),
                lat0=lat0,
                lon0=rng.uniform(0.0, 360.0),
                dlat=hemisphere * rng.uniform(0.0, 0.4),
                dlon=dlon,
                zeta0=float(np.exp(rng.uniform(np.log(3e-5), np.log(1.2e-4)))),
                radius_km=rng.uniform(300.0, 700.0),
                turn_lat=hemisphere * rng.uniform(0.0, 0.02),
            )
            if rng.random() < FADE_SHARE and storm.steps > 8:
                storm = replace(storm, fade_step=int(rng.integers(4, storm.steps - 4)))
            group = [storm]
            if rng.random() < PAIR_SHARE:
                apart_km = rng.uniform(550.0, 850.0)
                group.append(
                    replace(
                        storm,
                        name=storm.name + "_partner",
                        lon0=storm.lon0 + apart_km / (_KM_PER_DEG * np.cos(np.radians(lat0))),
                        zeta0=storm.zeta0 * rng.uniform(0.6, 0.95),
                        radius_km=rng.uniform(300.0, 450.0),
                        fade_step=-1,
                    )
                )
                group[0] = replace(storm, radius_km=min(storm.radius_km, 450.0))
            vortices += [v for v in group if v.steps >= 3]
    return vortices
