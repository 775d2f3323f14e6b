//! Fuzz target `config`: see `ordersync_fuzz::config` for what it checks.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        ordersync_fuzz::config(data);
    });
}
