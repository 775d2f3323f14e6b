//! Fuzz target `control_request`: see `ordersync_fuzz::control_request` for what it checks.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        ordersync_fuzz::control_request(data);
    });
}
