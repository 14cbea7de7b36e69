"""The DCT/DST forms of the mirror integration and the spectral divergence (sized to the scan)
against the complex FFT of the mirror twice the map's size in each direction, which they
replace: the same numbers to rounding, on odd and tiny shapes, unequal steps and masks."""

import numpy as np
import pytest

from dpcstem.bench import numpy_integrate_mirror, numpy_spectral_divergence
from dpcstem.fourier import integrate_gradient, spectral_divergence

SHAPES = [(1, 1), (1, 9), (8, 1), (2, 3), (12, 12), (37, 53), (64, 31)]


def assert_same(got, want):
    scale = max(float(np.abs(want).max()), 1e-300)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * scale)


def numpy_integrate_periodic(gx, gy, step_x, step_y):
    ny, nx = gx.shape
    ky = np.fft.fftfreq(ny, step_y)[:, None]
    kx = np.fft.fftfreq(nx, step_x)[None, :]
    k2 = kx**2 + ky**2
    k2[0, 0] = 1.0
    spectrum = (kx * np.fft.fft2(gx) + ky * np.fft.fft2(gy)) / (2j * np.pi * k2)
    spectrum[0, 0] = 0.0
    f = np.fft.ifft2(spectrum).real
    return f - f.mean()


@pytest.mark.parametrize("shape", SHAPES)
def test_mirror_integration_equals_the_fft_of_the_mirror(shape):
    rng = np.random.default_rng([1, *shape])
    gx, gy = rng.standard_normal(shape), rng.standard_normal(shape)
    got = integrate_gradient(gx, gy, step_x=0.5, step_y=0.7, method="mirror")
    assert_same(got, numpy_integrate_mirror(gx, gy, 0.5, 0.7))


@pytest.mark.parametrize("shape", SHAPES)
def test_periodic_integration_by_real_transforms_equals_the_complex_fft(shape):
    rng = np.random.default_rng([2, *shape])
    gx, gy = rng.standard_normal(shape), rng.standard_normal(shape)
    got = integrate_gradient(gx, gy, step_x=1.5, step_y=0.3, method="periodic")
    assert_same(got, numpy_integrate_periodic(gx, gy, 1.5, 0.3))


@pytest.mark.parametrize("cutoff", [None, 0.5, 0.05])
@pytest.mark.parametrize("shape", SHAPES)
def test_spectral_divergence_equals_the_fft_of_the_even_extension(shape, cutoff):
    rng = np.random.default_rng([3, *shape])
    fx, fy = rng.standard_normal(shape), rng.standard_normal(shape)
    got = spectral_divergence(fx, fy, step_x=0.5, step_y=0.7, cutoff=cutoff)
    assert_same(got, numpy_spectral_divergence(fx, fy, 0.5, 0.7, 1e12 if cutoff is None else cutoff))


def test_masked_pixels_are_zero_gradient_in_both_forms():
    rng = np.random.default_rng(4)
    gx, gy = rng.standard_normal((20, 30)), rng.standard_normal((20, 30))
    valid = rng.random((20, 30)) > 0.2
    got = integrate_gradient(gx, gy, step_x=1, step_y=1, valid=valid)
    assert_same(got, numpy_integrate_mirror(np.where(valid, gx, 0), np.where(valid, gy, 0), 1, 1))
    got = spectral_divergence(gx, gy, step_x=1, step_y=1, cutoff=0.3, valid=valid)
    assert_same(got, numpy_spectral_divergence(np.where(valid, gx, 0), np.where(valid, gy, 0), 1, 1, 0.3))
