from __future__ import annotations

from pathlib import Path

import pytest

from sim.profile import DynamicsProfile, GapProfile, available_profiles, load_profile


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gap.toml"
    path.write_text(text)
    return path


def test_shipped_profiles_load_with_their_values() -> None:
    nominal = load_profile("nominal")
    assert nominal.dynamics == DynamicsProfile()
    assert (nominal.latency_steps, nominal.action_noise_std) == (0, 0.0)
    assert all(v == 0.0 for v in nominal.sensor_noise().values())

    gap = load_profile("example_gap")
    assert gap.name == "example_gap"
    assert gap.dynamics.friction_scale == pytest.approx(0.6)
    assert gap.dynamics.mass_scale == pytest.approx(1.1)
    assert gap.dynamics.base_mass_offset_kg == pytest.approx(1.0)
    assert gap.dynamics.motor_strength_scale == pytest.approx(0.8)
    assert gap.dynamics.gravity_mps2 == (0.0, 0.0, -9.81)
    assert gap.latency_steps == 1
    assert gap.sensor_noise()["joint_vel"] == pytest.approx(1.5)
    assert {"nominal", "example_gap"} <= set(available_profiles())


def test_path_and_partial_file_defaults_to_nominal(tmp_path: Path) -> None:
    path = _write(tmp_path, "[dynamics]\nmass_scale = 1.2\n[actuation]\nlatency_steps = 3\n")
    prof = load_profile(path)
    assert prof.name == "gap"  # the file stem
    assert prof.dynamics == DynamicsProfile(mass_scale=1.2)
    assert prof.latency_steps == 3
    assert load_profile(str(path)) == prof


def test_unknown_key_names_file_key_and_valid_keys(tmp_path: Path) -> None:
    path = _write(tmp_path, "[dynamics]\nfriction = 0.5\n")
    with pytest.raises(ValueError) as e:
        load_profile(path)
    msg = str(e.value)
    assert str(path) in msg and "'friction'" in msg and "friction_scale" in msg and "mass_scale" in msg


def test_unknown_section_lists_sections(tmp_path: Path) -> None:
    path = _write(tmp_path, "[physics]\nmass_scale = 1.0\n")
    with pytest.raises(ValueError) as e:
        load_profile(path)
    msg = str(e.value)
    assert str(path) in msg and "'physics'" in msg
    assert all(s in msg for s in ("dynamics", "actuation", "sensors"))


@pytest.mark.parametrize(
    ("text", "key", "expected", "got"),
    [
        ("[dynamics]\nmass_scale = -1.0\n", "dynamics.mass_scale", "> 0", "-1.0"),
        ("[dynamics]\nfriction_scale = 0.0\n", "dynamics.friction_scale", "> 0", "0.0"),
        ("[actuation]\nlatency_steps = 1.5\n", "actuation.latency_steps", "integer >= 0", "1.5"),
        ("[actuation]\nlatency_steps = -1\n", "actuation.latency_steps", "integer >= 0", "-1"),
        ("[sensors]\ngyro_noise_radps = -0.1\n", "sensors.gyro_noise_radps", ">= 0", "-0.1"),
        ("[dynamics]\ngravity_mps2 = [0.0, -9.81]\n", "dynamics.gravity_mps2", "3 finite numbers", "-9.81"),
    ],
)
def test_out_of_range_names_file_key_range_and_value(
    tmp_path: Path, text: str, key: str, expected: str, got: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ValueError) as e:
        load_profile(path)
    msg = str(e.value)
    assert str(path) in msg, msg
    assert key in msg, msg
    assert expected in msg, msg
    assert got in msg, msg


def test_invalid_toml_and_unknown_name() -> None:
    with pytest.raises(ValueError, match=r"unknown profile 'nope'.*example_gap.*nominal"):
        load_profile("nope")
    with pytest.raises(ValueError, match="does not exist"):
        load_profile("/nonexistent/dir/x.toml")


def test_direct_construction_is_validated() -> None:
    with pytest.raises(ValueError, match=r"dynamics\.motor_strength_scale: expected > 0, got 0"):
        GapProfile(dynamics=DynamicsProfile(motor_strength_scale=0))
    with pytest.raises(ValueError, match=r"actuation\.action_noise_std"):
        GapProfile(action_noise_std=-0.1)
    with pytest.raises(ValueError, match="latency_steps"):
        GapProfile(latency_steps=True)  # a bool is not a step count
