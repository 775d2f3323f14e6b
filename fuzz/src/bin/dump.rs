//! Fuzz target `dump`: see `ordersync_fuzz::dump` for what it checks.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        ordersync_fuzz::dump(data);
    });
}
