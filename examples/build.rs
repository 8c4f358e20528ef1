//! Generates the message types of `../schemas/` for the examples (`codegen_orders`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    repliq_codegen::configure()
        .include_file("schemas.rs")
        // Lets the example print archived sides with `{:?}` (passed through to rkyv's derive).
        .type_attribute("market.Side", "#[rkyv(derive(Debug))]")
        .compile(&[
            "../schemas/market.rq",
            "../schemas/orders.rq",
            "../schemas/telemetry.rq",
        ])?;
    Ok(())
}
