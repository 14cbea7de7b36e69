"""dpcstem.plot: each figure is drawn, rendered, and what it shows is checked.

The maps are a synthetic space-charge layer (field along the interface normal, +x,
falling linearly to zero across a band) and point charges; the checks read the rendered
pixels, the artists' data and the labels, never the code's intermediate values.
"""

import colorsys
import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from dpcstem import plot  # noqa: E402
from dpcstem.errors import CalibrationError, InputDataError  # noqa: E402
from dpcstem.physics import VACUUM_PERMITTIVITY_F_M  # noqa: E402

SUPERSCRIPT_DIGITS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# --------------------------------------------------------------------------- synthetic maps


def space_charge_layer(shape=(40, 60), interface_px=20, width_px=16, peak_v_per_m=3.0e6):
    """E_x = E0 (1 − d/w) inside the band d = x − x0 in [0, w], zero outside; E_y = 0."""
    ny, nx = shape
    d = np.arange(nx, dtype=float) - interface_px
    row = np.where((d >= 0) & (d <= width_px), peak_v_per_m * (1 - d / width_px), 0.0)
    ex = np.broadcast_to(row, shape).copy()
    return ex, np.zeros(shape)


def point_charges(shape, charges):
    """Projected (2-D) field of line charges: E ∝ q r̂ / r, softened at the core (V/m)."""
    y, x = np.mgrid[0:shape[0], 0:shape[1]].astype(float)
    ex, ey = np.zeros(shape), np.zeros(shape)
    for row, col, strength in charges:
        dy, dx = y - row, x - col
        r2 = dx**2 + dy**2 + 2.0
        ex += strength * dx / r2
        ey += strength * dy / r2
    return ex, ey


def charge_density(ex, ey, step_nm):
    """ε0 ∇·E in C/m³ by central differences (steps in nm)."""
    sx, sy = step_nm
    return VACUUM_PERMITTIVITY_F_M * (np.gradient(ex, sx * 1e-9, axis=1)
                                      + np.gradient(ey, sy * 1e-9, axis=0))


# --------------------------------------------------------------------------- reading figures


def rendered(fig):
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(float) / 255


def pixel(image, fig, ax, x, y):
    """Rendered RGB at data point (x, y) of ``ax``."""
    dx, dy = ax.transData.transform((x, y))
    height = fig.canvas.get_width_height()[1]
    return image[int(round(height - dy)), int(round(dx))]


def hue(rgb):
    return colorsys.rgb_to_hsv(*rgb)[0]


def hue_distance(a, b):
    d = abs(a - b) % 1.0
    return min(d, 1.0 - d)


def tick_value(text):
    """A tick label as printed (unicode minus) → float."""
    return float(text.replace("−", "-"))


def scale_of(label):
    """10^n from a label '... (×10ⁿ unit)', 1 when there is no factor."""
    match = re.search(r"×10([⁰¹²³⁴⁵⁶⁷⁸⁹⁻]+)", label)
    return 10.0 ** int(match.group(1).translate(SUPERSCRIPT_DIGITS)) if match else 1.0


def colourbar_axes(fig, mappable_axes):
    return [a for a in fig.axes if a not in mappable_axes and a.get_label() == "<colorbar>"]


def check_tick_labels(fig, axis):
    """Each tick label times the label's factor equals the tick's data value."""
    fig.canvas.draw()
    factor = scale_of(axis.get_label_text())
    ticks = axis.get_majorticklocs()
    texts = [t.get_text() for t in axis.get_majorticklabels()]
    assert len(ticks) >= 2
    for location, text in zip(ticks, texts):
        assert tick_value(text) * factor == pytest.approx(location, rel=1e-3,
                                                          abs=1e-9 * factor)


# --------------------------------------------------------------------------- colour wheel


def test_vector_colour_image_hue_is_azimuth_from_x_toward_y_value_is_magnitude():
    vx = np.array([[1.0, 0.0, -1.0, 0.0, 0.5, np.nan]])
    vy = np.array([[0.0, 1.0, 0.0, -1.0, 0.0, 1.0]])
    rgb = plot.vector_colour_image(vx, vy, max_magnitude=1.0)
    assert rgb.shape == (1, 6, 3)
    hsv = [colorsys.rgb_to_hsv(*rgb[0, i]) for i in range(5)]
    for (h, s, v), expected in zip(hsv[:4], (0.0, 0.25, 0.5, 0.75)):
        assert hue_distance(h, expected) < 1e-6
        assert s == pytest.approx(1.0) and v == pytest.approx(1.0)
    assert hsv[4][2] == pytest.approx(0.5)  # half the magnitude, half the brightness
    np.testing.assert_allclose(rgb[0, 5], plot.NAN_COLOUR)
    # magnitudes above max_magnitude are clipped to full brightness
    bright = plot.vector_colour_image(np.array([[3.0]]), np.array([[0.0]]), max_magnitude=1.0)
    assert colorsys.rgb_to_hsv(*bright[0, 0])[2] == pytest.approx(1.0)


def test_vector_colour_image_default_brightness_is_robust_percentile():
    ex, ey = space_charge_layer()
    rgb = plot.vector_colour_image(ex, ey)
    value = rgb.max(axis=-1)
    limit = np.percentile(np.hypot(ex, ey), plot.ROBUST_PERCENTILE)
    np.testing.assert_allclose(value, np.clip(np.hypot(ex, ey) / limit, 0, 1), atol=1e-12)


def test_vector_map_pixels_take_the_wheel_colour_of_their_screen_direction(tmp_path):
    # left half: a uniform field along +x; right half: along +y (down on screen)
    vx = np.zeros((30, 40))
    vy = np.zeros((30, 40))
    vx[:, :20] = 2.0e6
    vy[:, 20:] = 2.0e6
    fig = plot.plot_vector_map(vx, vy, step_nm=0.5, title="uniform fields")
    fig.savefig(tmp_path / "vector_uniform.png")
    ax = fig.axes[0]
    (wheel,) = [a for a in ax.child_axes if a.get_label() == "colour wheel"]
    image = rendered(fig)
    along_x = pixel(image, fig, ax, 10, 15)
    along_y = pixel(image, fig, ax, 30, 15)

    # the wheel, sampled on screen: right of its centre, below it and above it
    box = wheel.get_window_extent()
    height = fig.canvas.get_width_height()[1]
    cx, cy = (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2
    radius = 0.7 * min(box.width, box.height) / 2 / 1.55 * 1.0

    def wheel_pixel(dx, dy):  # display offsets: +dy is up on screen
        return image[int(round(height - (cy + dy))), int(round(cx + dx))]

    right, below, above = wheel_pixel(radius, 0), wheel_pixel(0, -radius), wheel_pixel(0, radius)
    assert hue_distance(hue(along_x), hue(right)) < 0.03
    assert hue_distance(hue(along_y), hue(below)) < 0.03
    assert hue_distance(hue(along_y), hue(above)) > 0.4  # the wheel is not drawn upside down
    # and the colours are the documented ones: red along +x, hue 90° along +y
    assert hue_distance(hue(along_x), 0.0) < 0.02
    assert hue_distance(hue(along_y), 0.25) < 0.02
    assert "V/m" in wheel.get_title() and "×10⁶" in wheel.get_title()
    labels = {t.get_text() for t in wheel.texts}
    assert labels == {"+x", "−x", "+y", "−y"}


def test_vector_map_of_layer_and_charges_shows_nan_in_neutral_grey(tmp_path):
    shape = (48, 72)
    ex, ey = space_charge_layer(shape, interface_px=30, width_px=18)
    px, py = point_charges(shape, [(24, 12, 1.2e7), (36, 60, -1.2e7)])
    vx, vy = ex + px, ey + py
    vx[4:12, 40:52] = np.nan
    fig = plot.plot_vector_map(vx, vy, step_nm=(0.6, 0.6), title="space-charge layer")
    fig.savefig(tmp_path / "vector_layer.png")
    ax = fig.axes[0]
    image = rendered(fig)
    np.testing.assert_allclose(pixel(image, fig, ax, 46, 8), plot.NAN_COLOUR, atol=1 / 255)
    # the layer's field (+x) is bright red at the interface; beyond the band only the
    # weak far field of the charges is left, dark
    inside = pixel(image, fig, ax, 31, 2)
    assert hue_distance(hue(inside), 0.0) < 0.03 and inside.max() > 0.8
    assert pixel(image, fig, ax, 52, 2).max() < 0.25


# --------------------------------------------------------------------------- arrows


def arrows_on_screen(fig, quiver):
    """Tail → tip of each drawn arrow in screen pixels (+x right, +y down), shape (n, 2)."""
    fig.canvas.draw()
    offsets = quiver.get_offset_transform().transform(quiver.get_offsets())
    arrows = []
    for path, offset in zip(quiver.get_paths(), offsets):
        vertices = quiver.get_transform().transform(path.vertices) + offset
        tip = vertices[3]
        tail = (vertices[0] + vertices[6]) / 2
        arrows.append([tip[0] - tail[0], -(tip[1] - tail[1])])
    return np.array(arrows)


def arrow_key(ax):
    (key,) = [a for a in ax.artists if a.get_label() == "arrow key"]
    return key


@pytest.mark.parametrize("step_nm", [(1.0, 1.0), (0.5, 1.5)])
def test_arrows_point_on_screen_the_way_the_vector_points(step_nm, tmp_path):
    shape = (12, 36)
    vx = np.zeros(shape)
    vy = np.zeros(shape)
    vx[:, :12] = 1.0  # +x
    vy[:, 12:24] = 1.0  # +y: down on screen
    vx[:, 24:] = 1.0  # diagonal, 30° from +x toward +y
    vy[:, 24:] = np.tan(np.radians(30))
    background = np.random.default_rng(1).normal(100, 5, shape)
    fig = plot.plot_arrows(vx, vy, background, every=6, step_nm=step_nm)
    fig.savefig(tmp_path / "arrows_directions.png")
    ax = fig.axes[0]
    (quiver,) = [c for c in ax.collections if isinstance(c, matplotlib.quiver.Quiver)]
    arrows = arrows_on_screen(fig, quiver)
    lengths = np.hypot(*arrows.T)
    columns = quiver.get_offsets()[:, 0]
    expected = {0: (1.0, 0.0), 1: (0.0, 1.0),
                2: (np.cos(np.radians(30)), np.sin(np.radians(30)))}
    assert len(arrows) == 2 * 6
    for arrow, length, column in zip(arrows, lengths, columns):
        np.testing.assert_allclose(arrow / length, expected[int(column // 12)], atol=0.02)
    # lengths on screen are proportional to the magnitude (1 and 1/cos 30°) ...
    along_x = lengths[columns < 12]
    diagonal = lengths[columns >= 24]
    np.testing.assert_allclose(diagonal / along_x, 1 / np.cos(np.radians(30)), rtol=0.02)
    # ... and the key's arrow, "1 V/m", is as long as an arrow of magnitude 1
    key = arrow_key(ax)
    assert key.text.get_text() == "1 V/m"
    ends = key.arrow.get_transform().transform(key.arrow.get_path().vertices)
    key_length = ends[:, 0].max() - ends[:, 0].min()
    np.testing.assert_allclose(key_length, along_x, rtol=0.03)


def test_arrows_over_adf_show_layer_and_charges_with_a_key(tmp_path):
    shape = (60, 90)
    ex, ey = space_charge_layer(shape, interface_px=40, width_px=20)
    px, py = point_charges(shape, [(30, 15, 1.5e7)])
    adf = 800.0 + 300.0 * (np.arange(90) >= 40)[np.newaxis, :] + 0 * ex
    adf = adf + np.random.default_rng(0).normal(0, 25, shape)
    fig = plot.plot_arrows(ex + px, ey + py, adf, step_nm=0.8, title="field over ADF")
    fig.savefig(tmp_path / "arrows_adf.png")
    ax = fig.axes[0]
    (quiver,) = [c for c in ax.collections if isinstance(c, matplotlib.quiver.Quiver)]
    text = arrow_key(ax).text.get_text()
    assert re.fullmatch(r"[125]×10⁶ V/m", text), text
    # default spacing: about 16 arrows along the longer side
    assert len(np.unique(quiver.get_offsets()[:, 0])) == pytest.approx(16, abs=2)
    # the background is drawn in grey
    (image,) = ax.get_images()
    assert image.get_cmap().name.startswith("gray")


# --------------------------------------------------------------------------- scalar maps


def test_scalar_map_of_charge_is_symmetric_about_zero_with_units_on_the_colour_bar(tmp_path):
    shape = (40, 60)
    step = (0.5, 0.5)
    ex, ey = space_charge_layer(shape, interface_px=20, width_px=16, peak_v_per_m=3.0e7)
    px, py = point_charges(shape, [(10, 8, 4e7), (30, 50, -4e7)])
    rho = charge_density(ex + px, ey + py, step)
    fig = plot.plot_scalar_map(rho, step_nm=step, title="charge density")
    fig.savefig(tmp_path / "scalar_charge.png")
    ax = fig.axes[0]
    (image,) = ax.get_images()
    low, high = image.get_clim()
    assert low == -high
    assert high == pytest.approx(np.percentile(np.abs(rho), plot.ROBUST_PERCENTILE))
    np.testing.assert_array_equal(image.get_array(), rho)  # the image holds the map in SI
    (cbar,) = colourbar_axes(fig, [ax])
    label = cbar.yaxis.get_label_text()
    assert label.startswith("charge density (") and label.endswith("C/m³)")
    exponent = 3 * int(np.floor(np.log10(high) / 3))
    assert scale_of(label) == 10.0**exponent
    check_tick_labels(fig, cbar.yaxis)
    # zero is the white middle of the map
    np.testing.assert_allclose(image.to_rgba(0.0)[:3], image.cmap(0.5)[:3])
    assert image.cmap.name.startswith(plot.DIVERGING_CMAP)


def test_scalar_map_draws_nan_pixels_in_the_neutral_colour(tmp_path):
    ex, ey = space_charge_layer((30, 40), interface_px=10, width_px=12)
    rho = charge_density(ex, ey, (1.0, 1.0))
    rho[2:10, 25:35] = np.nan
    fig = plot.plot_scalar_map(rho, step_nm=1.0)
    fig.savefig(tmp_path / "scalar_nan.png")
    ax = fig.axes[0]
    image = rendered(fig)
    np.testing.assert_allclose(pixel(image, fig, ax, 30, 6), plot.NAN_COLOUR, atol=1 / 255)
    # the neutral colour is not the colour of zero
    zero = pixel(image, fig, ax, 3, 20)
    assert np.abs(zero - np.array(plot.NAN_COLOUR)).max() > 0.3


def test_scalar_map_field_units_and_limits_given():
    ex, _ = space_charge_layer(peak_v_per_m=4.0e6)
    fig = plot.plot_scalar_map(ex, units="V/m", vmax=5e6)
    ax = fig.axes[0]
    assert ax.get_images()[0].get_clim() == (-5e6, 5e6)
    (cbar,) = colourbar_axes(fig, [ax])
    assert cbar.yaxis.get_label_text() == "electric field (×10⁶ V/m)"
    check_tick_labels(fig, cbar.yaxis)
    # no step: pixel axes, labelled as such
    assert ax.get_xlabel() == "x (px)" and ax.get_ylabel() == "y (px)"


def test_scalar_map_sequential_uses_robust_limits_and_quantity_name():
    ex, ey = space_charge_layer()
    magnitude = np.hypot(ex, ey)
    fig = plot.plot_scalar_map(magnitude, units="V/m", diverging=False, quantity="|E|")
    ax = fig.axes[0]
    low, high = ax.get_images()[0].get_clim()
    assert (low, high) == pytest.approx(tuple(np.percentile(magnitude, [0.5, 99.5])))
    (cbar,) = colourbar_axes(fig, [ax])
    assert cbar.yaxis.get_label_text() == "|E| (×10⁶ V/m)"


def test_scalar_map_rejects_asymmetric_diverging_limits():
    with pytest.raises(InputDataError, match=r"diverging map is centred on zero.*vmin=-1"):
        plot.plot_scalar_map(np.ones((4, 4)), vmin=-1.0, vmax=2.0)


# --------------------------------------------------------------------------- scale bar


@pytest.mark.parametrize("step_nm, nx, expected", [
    (0.37, 100, "5 nm"),
    ((2.0, 1.0), 128, "50 nm"),
    (25.0, 200, "1 µm"),
    (0.02, 64, "0.2 nm"),
])
def test_scale_bar_length_in_data_units_matches_its_label(step_nm, nx, expected):
    fig, ax = plt.subplots()
    ax.imshow(np.zeros((40, nx)))
    bar = plot.add_scale_bar(ax, step_nm)
    step_x = step_nm if np.isscalar(step_nm) else step_nm[0]
    text = bar.text.get_text()
    assert text == expected
    number, unit = text.split()
    label_nm = float(number) * (1000.0 if unit == "µm" else 1.0)
    assert bar.bar.get_width() * step_x == pytest.approx(label_nm)
    assert bar.length_nm == pytest.approx(label_nm)
    # a nice length: 1, 2 or 5 × 10^n, and at most a quarter of the width
    mantissa = label_nm / 10 ** np.floor(np.log10(label_nm))
    assert round(mantissa, 9) in (1.0, 2.0, 5.0)
    assert bar.bar.get_width() <= 0.25 * nx
    # drawn inside the axes
    fig.canvas.draw()
    assert ax.get_window_extent().contains(*bar.get_window_extent().p0)
    assert ax.get_window_extent().contains(*bar.get_window_extent().p1)


def test_scale_bar_given_length_and_bad_step():
    fig, ax = plt.subplots()
    ax.imshow(np.zeros((10, 10)))
    bar = plot.add_scale_bar(ax, (0.5, 0.25), length_nm=3.0)
    assert bar.bar.get_width() == pytest.approx(6.0)
    assert bar.text.get_text() == "3 nm"
    with pytest.raises(CalibrationError, match=r"step_nm .* got -1"):
        plot.add_scale_bar(ax, -1.0)


def test_maps_with_a_step_carry_a_scale_bar_and_true_aspect():
    fig = plot.plot_scalar_map(np.ones((10, 20)), step_nm=(0.5, 1.0))
    ax = fig.axes[0]
    bars = [a for a in ax.artists if hasattr(a, "length_nm")]
    assert len(bars) == 1
    assert ax.get_aspect() == pytest.approx(2.0)  # step_y / step_x


# --------------------------------------------------------------------------- profiles


def test_profile_error_band_spans_value_plus_minus_error(tmp_path):
    ex, _ = space_charge_layer((1, 60), interface_px=20, width_px=16, peak_v_per_m=3.0e6)
    distance = (np.arange(60) - 20) * 0.5
    value = ex[0]
    error = 0.1e6 + 0.05 * value
    fig = plot.plot_profile(distance, value, error=error, label="bare")
    plot.plot_profile(distance, 0.5 * value, error=error / 2, label="coated", ax=fig.axes[0])
    fig.savefig(tmp_path / "profile.png")
    ax = fig.axes[0]
    band = ax.collections[0]
    vertices = band.get_paths()[0].vertices
    for d, v, e in zip(distance, value, error):
        ys = vertices[np.isclose(vertices[:, 0], d), 1]
        assert ys.min() == pytest.approx(v - e) and ys.max() == pytest.approx(v + e)
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), value)
    assert ax.get_xlabel() == "distance (nm)"
    assert ax.get_ylabel() == "electric field (×10⁶ V/m)"
    check_tick_labels(fig, ax.yaxis)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["bare", "coated"]


def test_profile_rejects_negative_error_and_mismatched_lengths():
    with pytest.raises(InputDataError, match="non-negative"):
        plot.plot_profile([0, 1], [1, 2], error=[-1, 1])
    with pytest.raises(InputDataError, match=r"shapes \(3,\) and \(2,\)"):
        plot.plot_profile([0, 1, 2], [1, 2])


# --------------------------------------------------------------------------- bias series


def bias_series(shape=(32, 48), biases=(0.0, 0.5, 1.0, 1.5, -0.5)):
    """Net charge density of a layer whose field grows with bias, C/m³, (n, ny, nx)."""
    maps = []
    for bias in biases:
        ex, ey = space_charge_layer(shape, interface_px=16, width_px=14,
                                    peak_v_per_m=2.0e7 * bias)
        px, py = point_charges(shape, [(8, 6, 3e7 * bias)])
        maps.append(charge_density(ex + px, ey + py, (0.7, 0.7)))
    return np.array(maps), np.array(biases)


def test_bias_panel_shares_one_symmetric_scale_and_names_each_bias(tmp_path):
    maps, biases = bias_series()
    maps[:, 24:30, 30:40] = np.nan
    fig = plot.plot_bias_panel(maps, biases, step_nm=0.7, ncols=3, title="net charge")
    fig.savefig(tmp_path / "bias_panel.png")
    panels = [a for a in fig.axes if a.get_images()]
    assert len(panels) == 5
    limits = {a.get_images()[0].get_clim() for a in panels}
    assert len(limits) == 1
    low, high = limits.pop()
    assert low == -high
    # the limit comes from all biases together, not from the first map
    assert high == pytest.approx(np.percentile(np.abs(maps[np.isfinite(maps)]),
                                               plot.ROBUST_PERCENTILE))
    assert high > np.nanpercentile(np.abs(maps[1]), plot.ROBUST_PERCENTILE)
    assert [a.get_title() for a in panels] == ["0 V", "+0.5 V", "+1 V", "+1.5 V", "−0.5 V"]
    colourbars = colourbar_axes(fig, panels)
    assert len(colourbars) == 1
    label = colourbars[0].yaxis.get_label_text()
    assert label.startswith("charge density (") and label.endswith("C/m³)")
    check_tick_labels(fig, colourbars[0].yaxis)
    # the unused sixth cell is blank
    blank = [a for a in fig.axes if a not in panels and a not in colourbars]
    assert len(blank) == 1 and not blank[0].axison
    image = rendered(fig)
    for ax in panels:
        np.testing.assert_allclose(pixel(image, fig, ax, 35, 27), plot.NAN_COLOUR,
                                   atol=1 / 255)


def test_bias_panel_draws_into_a_given_figure_and_checks_biases():
    maps, biases = bias_series(biases=(0.0, 1.0))
    fig = plt.figure()
    assert plot.plot_bias_panel(maps, biases, fig=fig, vmax=1e9) is fig
    assert {a.get_images()[0].get_clim() for a in fig.axes if a.get_images()} == {(-1e9, 1e9)}
    with pytest.raises(InputDataError, match=r"one bias per map \(2\), got shape \(3,\)"):
        plot.plot_bias_panel(maps, [0.0, 1.0, 2.0])


def test_charge_vs_bias_draws_each_series_with_its_error_bars(tmp_path):
    biases = np.array([0.0, 0.5, 1.0, 1.5, 2.0])
    bare = -1.2e-3 * biases
    coated = -0.4e-3 * biases
    errors = np.array([[0.1e-3] * 5, [0.05e-3] * 5])
    fig = plot.plot_charge_vs_bias(biases, np.array([bare, coated]), errors=errors,
                                   label=["bare", "coated"])
    fig.savefig(tmp_path / "charge_vs_bias.png")
    ax = fig.axes[0]
    containers = ax.containers
    assert len(containers) == 2
    for container, values, error in zip(containers, (bare, coated), errors):
        line, _caps, (bars,) = container
        np.testing.assert_allclose(line.get_xdata(), biases)
        np.testing.assert_allclose(line.get_ydata(), values)
        for segment, v, e in zip(bars.get_segments(), values, error):
            assert sorted(segment[:, 1]) == pytest.approx([v - e, v + e])
    assert ax.get_xlabel() == "bias (V)"
    assert ax.get_ylabel() == "net areal charge (×10⁻³ C/m²)"
    check_tick_labels(fig, ax.yaxis)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["bare", "coated"]


def test_charge_vs_bias_adds_series_to_given_axes():
    fig, ax = plt.subplots()
    assert plot.plot_charge_vs_bias([0, 1], [0, 1e-3], ax=ax, label="bare") is fig
    plot.plot_charge_vs_bias([0, 2], [0, 5e-3], ax=ax, label="coated")
    assert len(ax.containers) == 2
    assert ax.get_ylabel() == "net areal charge (×10⁻³ C/m²)"
    with pytest.raises(InputDataError, match=r"one name per series \(2\)"):
        plot.plot_charge_vs_bias([0, 1], [[0, 1], [0, 2]], label=["only one"])


# --------------------------------------------------------------------------- conventions


@pytest.mark.parametrize("draw", [
    lambda ax, m: plot.plot_vector_map(m, m, ax=ax),
    lambda ax, m: plot.plot_arrows(m, m, m, ax=ax),
    lambda ax, m: plot.plot_scalar_map(m, ax=ax),
    lambda ax, m: plot.plot_profile(np.arange(5.0), m[0], ax=ax),
    lambda ax, m: plot.plot_charge_vs_bias(np.arange(5.0), m[0], ax=ax),
])
def test_functions_draw_into_given_axes_and_return_its_figure(draw):
    fig, ax = plt.subplots()
    m = np.arange(20.0).reshape(4, 5)
    assert draw(ax, m) is fig
    assert ax.has_data()


def test_maps_of_different_shapes_are_refused():
    with pytest.raises(InputDataError, match=r"same shape.*vx \(3, 4\), vy \(4, 3\)"):
        plot.plot_vector_map(np.zeros((3, 4)), np.zeros((4, 3)))
    with pytest.raises(InputDataError, match=r"background must be a non-empty 2-D map"):
        plot.plot_arrows(np.zeros((3, 4)), np.zeros((3, 4)), np.zeros(4))


@pytest.mark.parametrize("units, expected", [
    ("C/m^3", "C/m³"), ("V*nm", "V·nm"), ("e/nm^-3", "e/nm⁻³"), ("1", ""), ("um", "µm"),
])
def test_units_are_printed_with_superscripts(units, expected):
    assert plot.pretty_units(units) == expected


def test_single_pixel_all_invalid_and_tiny_maps_still_draw():
    fig = plot.plot_vector_map(np.zeros((1, 1)), np.zeros((1, 1)), step_nm=1.0)
    rendered(fig)
    fig = plot.plot_scalar_map(np.full((6, 6), np.nan), step_nm=1.0)
    ax = fig.axes[0]
    np.testing.assert_allclose(pixel(rendered(fig), fig, ax, 2, 2), plot.NAN_COLOUR,
                               atol=1 / 255)
    # a deflection of a few hundred µrad: the rim reads in powers of ten, not 319×10⁻⁶
    vx = np.full((4, 4), 3.19e-4)
    fig = plot.plot_vector_map(vx, 0 * vx, units="mrad", max_magnitude=3.19e-4)
    (wheel,) = fig.axes[0].child_axes
    assert wheel.get_title().endswith("3.19×10⁻⁴ mrad")
    with pytest.raises(InputDataError, match=r"vmax must not be below vmin, got vmin=2"):
        plot.plot_scalar_map(np.ones((3, 3)), diverging=False, vmin=2.0, vmax=1.0)


@pytest.mark.parametrize("normal_deg", [15.0, 200.0])
def test_interface_is_drawn_with_its_normal_and_the_material_on_each_side(normal_deg):
    from dpcstem.interface import Interface

    step = (0.5, 0.25)
    fig = plot.plot_scalar_map(np.zeros((80, 60)), step_nm=step, units="V/m")
    ax = fig.axes[0]
    interface = Interface.from_normal((15.0, 10.0), normal_deg, 40.0)
    drawn = plot.annotate_interface(ax, interface, step, before="LiCoO2", after="Li6PS5Cl")
    # the line runs through both interface points, in pixels
    xs, ys = drawn["line"].get_data()
    np.testing.assert_allclose(np.c_[xs, ys] * step, [interface.start_nm, interface.end_nm])
    # the arrow points along the normal (screen y down, as the map)
    tail, head = np.asarray(drawn["normal"].xyann), np.asarray(drawn["normal"].xy)
    along = (head - tail) * step
    np.testing.assert_allclose(along / np.hypot(*along), interface.normal, atol=1e-9)
    assert drawn["normal_label"].get_text() == "n"
    # each material on its own side: negative distance for the cathode, positive for the electrolyte
    for key, sign in (("before", -1), ("after", 1)):
        position = np.asarray(drawn[key].get_position()) * step
        d = np.dot(position - interface.start_nm, interface.normal)
        assert np.sign(d) == sign, (key, d)
    assert {t.get_text() for t in ax.texts} >= {"LiCoO2", "Li6PS5Cl", "n"}
    plt.close(fig)


def test_structural_image_in_grey_and_a_grey_diverging_map_is_refused():
    fig = plot.plot_scalar_map(np.arange(12.0).reshape(3, 4), diverging=False, cmap="gray", units="counts")
    assert fig.axes[0].images[0].get_cmap().name.startswith("gray")
    plt.close(fig)
    with pytest.raises(InputDataError, match="cmap='gray' needs diverging=False"):
        plot.plot_scalar_map(np.zeros((3, 4)), cmap="gray")
