//! `compat`: which schema changes keep a type's fingerprint (and archived layout), and which
//! break it, each named.

use repliq_codegen::{CompatReport, compat_sources};

const OLD: &str = r#"
//! Market data.
package market;

/// Side.
enum Side { Buy, Sell }

message Level { price: i64, size: u64 }

/// Quote.
message Tick {
    symbol: string,
    side: Side,
    price: i64,
    size: u32,
}

message Book { bids: list<Level>, asks: list<Level> }

message Px(i64);
"#;

fn report(new: &str) -> CompatReport {
    compat_sources(&[("market.rq", OLD)], &[("market.rq", new)]).unwrap_or_else(|e| panic!("{e}"))
}

/// `(type, message)` of every breaking change.
fn breaking(new: &str) -> Vec<(String, String)> {
    let report = report(new);
    assert!(!report.is_compatible(), "{report}");
    report
        .breaking()
        .map(|c| (c.type_name.clone(), c.message.clone()))
        .collect()
}

fn edit(from: &str, to: &str) -> String {
    assert!(OLD.contains(from), "{from}");
    OLD.replacen(from, to, 1)
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn identical_schemas_are_compatible() {
    let report = report(OLD);
    assert!(report.is_compatible());
    assert!(report.changes().is_empty());
    assert!(
        report
            .to_string()
            .ends_with("compatible: every existing type keeps its fingerprint and archived layout")
    );
}

#[test]
fn docs_comments_order_and_new_types_are_compatible() {
    let new = r#"
//! Market data, reworded.
package market;

// Types may move around the file.
message Px(i64);

message Book { bids: list<Level>, asks: list<Level> }

/// A new type is fine.
message Status { up: bool }

/// Quote, reworded.
message Tick {
    /// Now documented.
    symbol: string,
    side: Side,
    price: i64,
    size: u32,
}

message Level { price: i64, size: u64 }

enum Side {
    /// Now documented.
    Buy,
    Sell,
}
"#;
    let report = report(new);
    assert!(report.is_compatible(), "{report}");
    let changes: Vec<_> = report
        .changes()
        .iter()
        .map(|c| (c.type_name.as_str(), c.breaking, c.message.as_str()))
        .collect();
    assert_eq!(changes, [("market.Status", false, "new type")]);
}

#[test]
fn bytes_and_list_of_u8_are_the_same_type() {
    let old = "package m; message A { data: bytes, more: optional<list<u8>> }";
    let new = "package m; message A { data: list<u8>, more: optional<bytes> }";
    let report = compat_sources(&[("m.rq", old)], &[("m.rq", new)]).expect("compat");
    assert!(report.is_compatible(), "{report}");
    assert!(report.changes().is_empty(), "{report}");
}

#[test]
fn a_changed_field_type_is_breaking() {
    assert_eq!(
        breaking(&edit("size: u32", "size: u64")),
        pairs(&[(
            "market.Tick",
            "field `size` changed type from `u32` to `u64`"
        )])
    );
}

#[test]
fn added_removed_and_reordered_fields_are_breaking() {
    assert_eq!(
        breaking(&edit(
            "    size: u32,\n",
            "    size: u32,\n    venue: string,\n"
        )),
        pairs(&[(
            "market.Tick",
            "field `venue` added: archived records have no room for it"
        )])
    );
    assert_eq!(
        breaking(&edit(
            "    price: i64,\n    size: u32,\n",
            "    price: i64,\n"
        )),
        pairs(&[("market.Tick", "field `size` removed")])
    );
    assert_eq!(
        breaking(&edit(
            "    price: i64,\n    size: u32,\n",
            "    size: u32,\n    price: i64,\n"
        )),
        pairs(&[(
            "market.Tick",
            "fields reordered: the archived layout follows declaration order"
        )])
    );
}

#[test]
fn a_renamed_field_keeps_the_layout_but_breaks_the_fingerprint() {
    assert_eq!(
        breaking(&edit("price: i64,\n    size", "px: i64,\n    size")),
        pairs(&[(
            "market.Tick",
            "field `price` renamed to `px`: same layout, but the fingerprint changes"
        )])
    );
}

#[test]
fn enum_changes_are_breaking() {
    assert_eq!(
        breaking(&edit(
            "enum Side { Buy, Sell }",
            "enum Side { Buy, Sell, Cross }"
        )),
        pairs(&[
            (
                "market.Side",
                "variant `Cross` added: the enum's archived layout and fingerprint change"
            ),
            (
                "market.Tick",
                "field `side`: its type `market.Side` changed (see there)"
            ),
        ])
    );
    assert_eq!(
        breaking(&edit("enum Side { Buy, Sell }", "enum Side { Sell, Buy }"))[0],
        (
            "market.Side".to_string(),
            "variant `Buy` moved from position 0 to 1: its discriminant changes".to_string()
        )
    );
    assert_eq!(
        breaking(&edit("enum Side { Buy, Sell }", "enum Side { Bid, Ask }"))[..2],
        pairs(&[
            (
                "market.Side",
                "variant `Buy` renamed to `Bid`: same layout, but the fingerprint changes"
            ),
            (
                "market.Side",
                "variant `Sell` renamed to `Ask`: same layout, but the fingerprint changes"
            ),
        ])
    );
    assert_eq!(
        breaking(&edit(
            "enum Side { Buy, Sell }",
            "enum Side { Buy(u8), Sell }"
        ))[0],
        (
            "market.Side".to_string(),
            "variant `Buy`: changed from no fields to tuple fields".to_string()
        )
    );
}

#[test]
fn a_change_propagates_to_every_type_that_contains_it() {
    assert_eq!(
        breaking(&edit(
            "message Level { price: i64, size: u64 }",
            "message Level { price: i64, size: u32 }"
        )),
        pairs(&[
            (
                "market.Level",
                "field `size` changed type from `u64` to `u32`"
            ),
            (
                "market.Book",
                "field `bids`: its type `market.Level` changed (see there)"
            ),
            (
                "market.Book",
                "field `asks`: its type `market.Level` changed (see there)"
            ),
        ])
    );
}

#[test]
fn removed_types_shape_and_kind_changes_are_breaking() {
    assert_eq!(
        breaking(&edit("message Px(i64);", "")),
        pairs(&[(
            "market.Px",
            "type removed (or renamed): readers of existing queues can no longer name it"
        )])
    );
    assert_eq!(
        breaking(&edit("message Px(i64);", "message Px { value: i64 }")),
        pairs(&[("market.Px", "changed from tuple fields to named fields")])
    );
    assert_eq!(
        breaking(&edit("message Px(i64);", "enum Px { Value(i64) }")),
        pairs(&[("market.Px", "changed from message to enum")])
    );
    assert_eq!(
        breaking(&edit("message Px(i64);", "message Px(i64, i64);")),
        pairs(&[(
            "market.Px",
            "field `1` added: archived records have no room for it"
        )])
    );
}

#[test]
fn a_renamed_package_renames_every_type() {
    let changes = breaking(&edit("package market;", "package md;"));
    assert_eq!(changes.len(), 5, "{changes:?}");
    assert!(changes.iter().all(|(_, m)| m.starts_with("type removed")));
}

#[test]
fn the_report_names_locations_and_fingerprints() {
    let text = report(&edit("size: u32", "size: u64")).to_string();
    assert!(
        text.contains(
            "error[breaking]: market.Tick: field `size` changed type from `u32` to `u64`"
        ),
        "{text}"
    );
    assert!(text.contains("--> market.rq:15:11"), "{text}");
    assert!(text.contains("= fingerprint 0x"), "{text}");
    assert!(
        text.ends_with("incompatible: 1 breaking change in 1 type (market.Tick)"),
        "{text}"
    );
}

#[test]
fn errors_in_either_version_are_reported() {
    let err = compat_sources(
        &[("market.rq", OLD)],
        &[("market.rq", "package market; message A { x: Nope }")],
    )
    .unwrap_err();
    assert!(err.to_string().contains("unknown type `Nope`"), "{err}");
}
