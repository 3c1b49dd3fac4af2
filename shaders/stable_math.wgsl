
// ---- stable_math.wgsl: helpers appended to every loss kernel ---------------------------------
// WGSL's `log` only promises an absolute error of 2^-21 on [0.5, 2], which is a large *relative*
// error for log(1 + x) with small x, and it has no `log1p`. These helpers use polynomials there.

// log(1 + x) for x in [0, 1], to ~1e-9 relative: log1p(x) = 2·atanh(y) with y = x / (2 + x) <= 1/3,
// summed as 2·y·(1 + y²/3 + y⁴/5 + ... + y¹⁶/17).
fn log1p_unit(x: f32) -> f32 {
    let y = x / (2.0 + x);
    let y2 = y * y;
    var series = 1.0 / 17.0;
    series = 1.0 / 15.0 + y2 * series;
    series = 1.0 / 13.0 + y2 * series;
    series = 1.0 / 11.0 + y2 * series;
    series = 1.0 / 9.0 + y2 * series;
    series = 1.0 / 7.0 + y2 * series;
    series = 1.0 / 5.0 + y2 * series;
    series = 1.0 / 3.0 + y2 * series;
    series = 1.0 + y2 * series;
    return 2.0 * y * series;
}

// log(s) for s >= 1 (a sum of exponentials shifted by their maximum): accurate near s = 1.
fn log_at_least_one(s: f32) -> f32 {
    if s < 2.0 {
        return log1p_unit(s - 1.0);
    }
    return log(s);
}

// softplus(x) = log(1 + e^x) = max(x, 0) + log(1 + e^-|x|): never overflows, exact for |x| up to f32 range.
fn softplus(x: f32) -> f32 {
    return max(x, 0.0) + log1p_unit(exp(-abs(x)));
}

// σ(x) = 1 / (1 + e^-x), evaluated without overflow for any sign of x.
fn sigmoid(x: f32) -> f32 {
    let e = exp(-abs(x));
    let s = 1.0 / (1.0 + e);
    return select(e * s, s, x >= 0.0);
}
