//! The compile errors of misuse, each against its `.stderr` snapshot (`TRYBUILD=overwrite`
//! rewrites them). Every case fails inside the macro, before the expansion would need the
//! facade's run-time support, so these tests build the macro crate alone.

#[test]
fn misuse_is_a_compile_error_that_names_the_mistake() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
