//! `write_every_type DIR [COUNT]`: writes a queue of `sink.Everything` messages (every supported
//! field type) for `.ci/python-reader.sh`, which prints it with `repliq cat` (built without this
//! type) and with the Python reader and compares.

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("usage: write_every_type DIR [COUNT]");
    let count = args.next().map_or(200, |c| c.parse().expect("COUNT is a number"));
    let values = repliq_tests::kitchen_sink::write_sample_queue(dir.as_ref(), count);
    eprintln!("wrote {} messages to {dir}", values.len());
}
