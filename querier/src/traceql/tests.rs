use super::ast::*;
use super::*;

fn ok(q: &str) -> Query {
    parse(q).unwrap_or_else(|e| panic!("{q}: {e}"))
}

fn err(q: &str) -> String {
    match parse(q) {
        Ok(parsed) => panic!("{q} parsed: {parsed:?}"),
        Err(e) => e.to_string(),
    }
}

fn filter(q: &str) -> FieldExpr {
    match ok(q).pipeline.stages.into_iter().next() {
        Some(Stage::Spanset(SpansetExpr::Filter(f))) => f,
        other => panic!("{other:?}"),
    }
}

fn attr(scope: AttributeScope, name: &str) -> FieldExpr {
    FieldExpr::Attribute(Attribute {
        scope,
        parent: false,
        name: name.to_owned(),
    })
}

#[test]
fn logical_operators_share_one_level_left_to_right() {
    // Tempo: `a || b && c` is `(a || b) && c`.
    let f = filter("{ .a = 1 || .b = 2 && .c = 3 }");
    let FieldExpr::Binary(BinaryOp::And, lhs, _) = f else {
        panic!("{f:?}")
    };
    assert!(matches!(*lhs, FieldExpr::Binary(BinaryOp::Or, _, _)));
}

#[test]
fn arithmetic_precedence_and_unary_operators() {
    let f = filter("{ -.a * .b + 1 > 2 }");
    let FieldExpr::Binary(BinaryOp::Gt, lhs, _) = f else {
        panic!()
    };
    let FieldExpr::Binary(BinaryOp::Add, neg, _) = *lhs else {
        panic!()
    };
    assert!(
        matches!(*neg, FieldExpr::Unary(UnaryOp::Neg, ref x) if matches!(**x, FieldExpr::Binary(BinaryOp::Mul, _, _)))
    );
    let f = filter("{ !.a = .b }");
    assert!(
        matches!(f, FieldExpr::Binary(BinaryOp::Eq, ref l, _) if matches!(**l, FieldExpr::Unary(UnaryOp::Not, _)))
    );
    let f = filter("{ 2 ^ 3 ^ 2 = .x }");
    let FieldExpr::Binary(BinaryOp::Eq, pow, _) = f else {
        panic!()
    };
    assert!(
        matches!(*pow, FieldExpr::Binary(BinaryOp::Pow, _, ref r) if matches!(**r, FieldExpr::Binary(BinaryOp::Pow, _, _)))
    );
}

#[test]
fn structural_operators_bind_tighter_than_logical_ones() {
    let q = ok("{ .a } && { .b } >> { .c }");
    let Stage::Spanset(SpansetExpr::Op(SpansetOp::And, _, rhs)) = &q.pipeline.stages[0] else {
        panic!()
    };
    assert!(matches!(
        **rhs,
        SpansetExpr::Op(SpansetOp::Descendant, _, _)
    ));
}

#[test]
fn scopes_intrinsics_nil_and_hints() {
    let f = filter(
        r#"{ span.http.status_code >= 500 && resource.service.name = "a" && span:childCount = 0 && trace:rootService = "x" }"#,
    );
    let mut fields = Vec::new();
    f.visit_fields(&mut |x| fields.push(x.clone()));
    assert_eq!(
        fields,
        [
            attr(AttributeScope::Span, "http.status_code"),
            attr(AttributeScope::Resource, "service.name"),
            FieldExpr::Intrinsic(Intrinsic::ChildCount),
            FieldExpr::Intrinsic(Intrinsic::RootService),
        ]
    );
    assert_eq!(
        filter("{ span.optional = nil }"),
        FieldExpr::Exists(Box::new(attr(AttributeScope::Span, "optional")), false)
    );
    assert_eq!(
        filter("{ nil != .x }"),
        FieldExpr::Exists(Box::new(attr(AttributeScope::Unscoped, "x")), true)
    );
    let q = ok("{ } with (most_recent=true)");
    assert!(q.most_recent());
    let f = filter(r#"{ parent.span."a b" = `x` }"#);
    assert_eq!(
        f,
        FieldExpr::binary(
            BinaryOp::Eq,
            FieldExpr::Attribute(Attribute {
                scope: AttributeScope::Span,
                parent: true,
                name: "a b".into()
            }),
            FieldExpr::Static(Static::String("x".into()))
        )
    );
}

/// Tempo's documented example queries (`construct-traceql-queries.md`).
const TEMPO_EXAMPLES: &[&str] = &[
    r#"{ resource.service.name = "frontend" && name = "POST /api/orders" }"#,
    r#"{ span.http.status_code >= 200 && span.http.status_code < 300 } | count() > 2"#,
    r#"{ span.http.request.header.Accept =~ "application.*" }"#,
    r#"{ resource.service.name="frontend" } >> { status = error }"#,
    r#"{ } !< { resource.service.name = "productcatalogservice" }"#,
    r#"{ resource.service.name = "productcatalogservice" } ~ { resource.service.name="frontend" }"#,
    r#"{ span:childCount = 0 }"#,
    r#"{ span.http.status_code = 200 } | select(resource.service.name)"#,
    r#"{ span.http.method = "GET" && status = ok } && { span.http.method = "DELETE" && status != ok }"#,
    r#"{ trace:duration > 5s }"#,
    r#"{ event.exception.message =~ ".*something went wrong.*" }"#,
    r#"{ span.optional_field = nil }"#,
    r#"{ span.required_field != nil }"#,
    r#"{ span.http.url = "/path/of/api" && status = error } &>> { status = error }"#,
    r#"{ status = error } | by(resource.service.name) | count() > 1"#,
    r#"{ } | sum(span.bytesProcessed) > 1000000000"#,
    r#"{ status = error } | select(span.http.status_code, span.http.url)"#,
    r#"{ span.foo = "bar" } >> { status = error } with (most_recent=true)"#,
    r#"{ span:status = error } | rate() by (resource.service.name, span:name)"#,
    r#"{ span:name = "GET /:endpoint" } | quantile_over_time(span:duration, .99) by (span.http.target) with (exemplars=true)"#,
    r#"{ span:duration < 5ms } | count_over_time() by(resource.service.name) | topk(10)"#,
    r#"{ .foo = "bar" } | coalesce()"#,
    r#"({ .a } | count() > 1) && ({ .b })"#,
    r#"{ link:traceID = "f1f1" && event:name = "exception" && instrumentation:name = "x" }"#,
    r#"{ duration > 1h30m && duration < 2d }"#,
];

#[test]
fn tempo_examples_parse_and_print_back_to_the_same_tree() {
    for q in TEMPO_EXAMPLES {
        let parsed = ok(q);
        let printed = display::query(&parsed);
        let reparsed = parse(&printed).unwrap_or_else(|e| panic!("{q} printed as {printed}: {e}"));
        assert_eq!(parsed, reparsed, "{q} printed as {printed}");
    }
}

#[test]
fn errors_say_where_and_what() {
    assert_eq!(
        err("{ .a = }"),
        "parse error at line 1, col 8: syntax error: unexpected }, expecting a field, attribute or value"
    );
    assert!(err("{ attribute = 4 }").contains("unknown identifier: attribute"));
    assert!(err("{ .a == 4 }").starts_with("parse error at line 1, col 7"));
    assert!(err("{ status > ok }").contains("illegal operation for the given types"));
    assert!(err(r#"{ 1 = "foo" }"#).contains("binary operations must operate on the same type"));
    assert!(err("{ 1h }").contains("must resolve to a boolean"));
    assert!(err(r#"{ span.foo =~ "[" }"#).contains("invalid regex"));
    assert!(err("{ span:status = nil }").contains("intrinsics cannot be nil"));
    assert!(err("{ true } | count()").contains("compared with a number"));
    assert!(err("coalesce() | { true }").contains("coalesce() cannot start a pipeline"));
    assert!(
        err("{ trace:rootServiceName = \"a\" }")
            .contains("unknown intrinsic trace:rootServiceName")
    );
    assert!(err("").contains("empty query"));
    assert!(err("{ .a = \"x }").contains("not terminated"));
    assert!(err("{ .a }\n  | by(1)").contains("must reference the span"));
    assert!(err("{ .a = $var }").contains("unexpected character"));
    assert!(parse("count() + 1 > 2").unwrap_err().unsupported);
}

#[test]
fn nesting_is_bounded_so_a_query_cannot_exhaust_the_stack() {
    let n = 50_000;
    let too_deep = [
        format!("{{ {}.a = 1{} }}", "(".repeat(n), ")".repeat(n)),
        format!("{{ {}.a }}", "!".repeat(n)),
        format!("{{ {}.a }}", "-".repeat(n)),
        format!("{{ {} }}", vec![".a = 1"; n].join(" && ")),
        format!("{{ .a = {} }}", vec!["2"; n].join(" ^ ")),
        format!("{{ .a{} }}", " = nil".repeat(n)),
        vec!["{ }"; n].join(" && "),
        format!("{}{{ }}{}", "(".repeat(n), ")".repeat(n)),
    ];
    for q in too_deep {
        assert!(err(&q).contains("nested deeper than"), "{}", &q[..40]);
    }
    // Well inside the limit: parses, checks and prints back.
    let deep = format!("{{ {}.a = 1{} }}", "(".repeat(60), ")".repeat(60));
    let chain = format!("{{ {} }}", vec![".a = 1"; 60].join(" || "));
    for q in [deep, chain] {
        let parsed = ok(&q);
        assert_eq!(ok(&display::query(&parsed)), parsed);
    }
}

#[test]
fn nil_compared_with_nil() {
    assert_eq!(
        filter("{ nil = nil }"),
        FieldExpr::Static(Static::Bool(true))
    );
    assert_eq!(
        filter("{ nil != nil }"),
        FieldExpr::Static(Static::Bool(false))
    );
}

#[test]
fn group_keys_of_string_arrays_do_not_collide() {
    use std::borrow::Cow;

    use super::eval::Value;
    let s = |v: &str| Value::Str(Cow::Owned(v.to_owned()));
    let joined = Value::Array(vec![s("a,s:b")]);
    let split = Value::Array(vec![s("a"), s("b")]);
    assert_ne!(joined.group_key(), split.group_key());
    assert_ne!(s("1").group_key(), Value::Int(1).group_key());
}
