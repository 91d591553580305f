fn main() {
    std::process::exit(dynamo_etl::cli::main());
}
