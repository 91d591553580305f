{
  description = "dynamo-etl: copy DynamoDB tables into Redshift or PostgreSQL through S3";

  # The Nix path to the container image. CI does not build it (no Nix there): CI builds and
  # rehearses the image of jobs/aws/image instead (see jobs/aws/README.md).
  # nixos-unstable because the AWS SDK crates in Cargo.lock need rustc >= 1.94.1 (checked below).
  # `nix flake lock` pins the exact revision in flake.lock; commit that file.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      lib = nixpkgs.lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      cargoToml = builtins.fromTOML (builtins.readFile ./Cargo.toml);
      minimumRustc = "1.94.1";

      # Only what the build needs, so editing docs or jobs/ does not rebuild the binary.
      # (In a git checkout a flake sees tracked files only: `git add` new files before building.)
      source = lib.fileset.toSource {
        root = ./.;
        fileset = lib.fileset.unions [
          ./Cargo.toml
          ./Cargo.lock
          ./src
          (lib.fileset.maybeMissing ./build.rs)
          # Not built here, but Cargo looks at these target folders when it loads the manifest.
          (lib.fileset.maybeMissing ./tests)
          (lib.fileset.maybeMissing ./benches)
          (lib.fileset.maybeMissing ./examples)
        ];
      };
    in
    {
      packages = forAllSystems (
        pkgs:
        let
          dynamo-etl =
            assert lib.assertMsg (lib.versionAtLeast (lib.getVersion pkgs.rustc) minimumRustc)
              "dynamo-etl needs rustc >= ${minimumRustc}; this nixpkgs has ${lib.getVersion pkgs.rustc} (run `nix flake update`)";
            pkgs.rustPlatform.buildRustPackage {
              pname = cargoToml.package.name;
              version = cargoToml.package.version;
              src = source;
              cargoLock.lockFile = ./Cargo.lock;
              # Only the product binary (src/bin/ also holds developer tools).
              cargoBuildFlags = [
                "--bin"
                "dynamo-etl"
              ];
              # The test suite needs DynamoDB Local, an S3 server and PostgreSQL (jobs/stack-up);
              # run it in CI with the dev shell instead of inside the sandbox.
              doCheck = false;
              meta = {
                description = cargoToml.package.description;
                license = lib.licenses.asl20;
                mainProgram = "dynamo-etl";
                platforms = systems;
              };
            };

          # The reviewed static data-schemas (schemas/<source-table>/*.json), the fallback when
          # the schema cache has no valid snapshot. Empty until the repository has a schemas/ folder.
          schemas = pkgs.runCommand "dynamo-etl-schemas" { } (
            ''
              mkdir -p $out/share/dynamo-etl/schemas
            ''
            + lib.optionalString (builtins.pathExists ./schemas) ''
              cp -r ${./schemas}/. $out/share/dynamo-etl/schemas/
            ''
          );

          image = pkgs.dockerTools.buildLayeredImage {
            name = "dynamo-etl";
            tag = self.shortRev or self.dirtyShortRev or "dev";
            contents = [
              dynamo-etl
              schemas
              pkgs.cacert
            ];
            # The image has no /tmp otherwise.
            extraCommands = ''
              mkdir -m 1777 tmp
            '';
            config = {
              Entrypoint = [ (lib.getExe dynamo-etl) ];
              Env = [
                "SSL_CERT_FILE=${pkgs.cacert}/etc/ssl/certs/ca-bundle.crt"
                "ETL_SCHEMAS_DIR=${schemas}/share/dynamo-etl/schemas"
                "ETL_LOG_FORMAT=json"
              ];
              # Any unprivileged user will do: the binary writes nothing to the local disk.
              User = "65534:65534";
              WorkingDir = "/tmp";
            };
          };
        in
        {
          inherit dynamo-etl image;
          default = dynamo-etl;
        }
      );

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = [
            pkgs.cargo
            pkgs.rustc
            pkgs.clippy
            pkgs.rustfmt
            pkgs.postgresql_15
            pkgs.nodejs
            pkgs.jdk17
            (pkgs.python3.withPackages (ps: [ ps.pip ]))
            # deploying (jobs/aws/README.md)
            pkgs.awscli2
            pkgs.skopeo
          ];
          # jobs/stack-up looks for PostgreSQL 15 here (its default is the Debian path).
          ETL_PG_BIN = "${pkgs.postgresql_15}/bin";
        };
      });
    };
}
