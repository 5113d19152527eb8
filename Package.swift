// swift-tools-version:6.0
//
// The containers-first toolbox: small single-purpose commands for running Slurm job steps inside
// containers described by an Environment Definition File (EDF). One executable target per command;
// shared code lives in libraries split by domain. See README.md for the pipeline and its documents.

import PackageDescription

let package = Package(
    name: "toolbox",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "edf-merge", targets: ["edf-merge"]),
        .executable(name: "edf-expand", targets: ["edf-expand"]),
        .executable(name: "img-pull", targets: ["img-pull"]),
        .executable(name: "img-squash", targets: ["img-squash"]),
        .executable(name: "img-build", targets: ["img-build"]),
        .executable(name: "ns-enter", targets: ["ns-enter"]),
        .executable(name: "hook-run", targets: ["hook-run"]),
        .executable(name: "toolbox-hook", targets: ["toolbox-hook"]),
        .executable(name: "toolbox-srun", targets: ["toolbox-srun"]),
        .executable(name: "toolbox-sbatch", targets: ["toolbox-sbatch"]),
        .executable(name: "toolbox-salloc", targets: ["toolbox-salloc"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        // MARK: Commands (each main.swift is a few lines)
        .executableTarget(name: "edf-merge", dependencies: ["EDFCommands"]),
        .executableTarget(name: "edf-expand", dependencies: ["EDFCommands"]),
        .executableTarget(name: "img-pull", dependencies: ["ToolboxCommands"]),
        .executableTarget(name: "img-squash", dependencies: ["ToolboxCommands"]),
        .executableTarget(name: "img-build", dependencies: ["ToolboxCommands"]),
        // The runtime commands link only what they use (no libcurl): they start once per task.
        .executableTarget(name: "ns-enter", dependencies: ["RuntimeCommands"]),
        .executableTarget(name: "hook-run", dependencies: ["RuntimeCommands"]),
        .executableTarget(name: "toolbox-hook", dependencies: ["RuntimeCommands"]),
        .executableTarget(name: "toolbox-srun", dependencies: ["SlurmCommands"]),
        .executableTarget(name: "toolbox-sbatch", dependencies: ["SlurmCommands"]),
        .executableTarget(name: "toolbox-salloc", dependencies: ["SlurmCommands"]),

        // MARK: Libraries, by domain
        // Diagnostics, exit statuses, stdin/stdout/stderr and file helpers shared by every command.
        .target(name: "ToolboxCore"),
        // The documents that flow between the stages (no I/O): the rendered environment, image
        // references, mounts.
        .target(name: "ToolboxModel"),
        // Environment Definition Files: loading, search path, inheritance, expansion, validation.
        .target(
            name: "EDF",
            dependencies: ["ToolboxCore", "ToolboxModel", .product(name: "TOMLKit", package: "TOMLKit")]
        ),
        // OCI images and registries: digests, manifests, the content-addressed blob cache.
        .target(
            name: "OCI",
            dependencies: ["ToolboxCore", .product(name: "Crypto", package: "swift-crypto")]
        ),
        // The registry client: parallel HTTP over libcurl, authentication, credentials, pulls.
        .target(
            name: "Registry",
            dependencies: ["OCI", "ToolboxCore", "ToolboxModel", "CCurl", "CToolboxShim"]
        ),
        // The squashfs 4.0 writer: parallel block compression, fragments, duplicate files stored
        // once, holes, xattrs; the inode, directory, fragment, id and xattr tables.
        .target(
            name: "SquashFS",
            dependencies: ["SystemLibraries", "ToolboxCore", .product(name: "Crypto", package: "swift-crypto")]
        ),
        // Image layers: gzip/zstd streams, the tar reader (ustar, GNU, PAX, sparse), and the
        // flattening of layers (whiteouts, opaque directories, hard links) into a squashfs.
        .target(name: "Build", dependencies: ["OCI", "ToolboxCore", "ToolboxModel"]),
        .target(name: "Layers", dependencies: ["SquashFS", "SystemLibraries", "ToolboxCore"]),
        // The container runtime: user and mount namespaces, the image's FUSE server or loop mount,
        // the overlay, system and user mounts, the environment, joining a running container.
        .target(name: "Runtime", dependencies: ["ToolboxCore", "ToolboxModel", "CRuntimeShim"]),
        // Site and user hooks: the enroot hook protocol, its fstab dialect and environ files.
        .target(name: "Hooks", dependencies: ["Runtime", "ToolboxCore", "ToolboxModel", "CRuntimeShim"]),
        // What every command shares: the Tool protocol (errors as `<tool>: error: ...`, exit
        // statuses), JSON output, the process context.
        .target(
            name: "ToolSupport",
            dependencies: ["ToolboxCore", "ToolboxModel", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // The ParsableCommands behind ns-enter, hook-run and toolbox-hook.
        .target(
            name: "RuntimeCommands",
            dependencies: [
                "Runtime", "Hooks", "ToolSupport", "ToolboxCore", "ToolboxModel",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The srun wrapper's command (bin/srun hands `srun --environment=...` to it): it runs the
        // other commands as its stages.
        .target(
            name: "SlurmCommands",
            dependencies: [
                "ToolSupport", "ToolboxCore", "ToolboxModel", "Runtime", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The ParsableCommands behind edf-merge and edf-expand: the EDF code alone (no libcurl,
        // no image code), so that they start in a few milliseconds (the srun wrapper runs edf-expand
        // for every job step).
        .target(
            name: "EDFCommands",
            dependencies: [
                "EDF", "ToolSupport", "ToolboxCore", "ToolboxModel",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The ParsableCommands behind img-pull and img-squash.
        .target(
            name: "ToolboxCommands",
            dependencies: [
                "Build", "OCI", "Registry", "Layers", "SquashFS", "SystemLibraries", "ToolSupport", "ToolboxCore",
                "ToolboxModel",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Swift API over the C libraries that the image stages use (zstd, zlib, libcurl,
        // libsquashfuse).
        .target(name: "SystemLibraries", dependencies: ["CZstd", "CZlib", "CCurl", "CToolboxShim"]),

        // MARK: C libraries
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CISAL", pkgConfig: "libisal", providers: [.apt(["libisal-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(
            name: "CSquashFUSE",
            pkgConfig: "squashfuse_ll fuse3",
            providers: [.apt(["libsquashfuse-dev", "libfuse3-dev"])]
        ),
        // Our own small C shim: typed wrappers for variadic and macro C APIs (curl_easy_setopt,
        // inflateInit2), the libsquashfuse calls, whose headers cannot be imported into Swift, and
        // ISA-L's inflate, whose state struct is best kept on the C side.
        .target(name: "CToolboxShim", dependencies: ["CZlib", "CCurl", "CSquashFUSE", "CISAL"]),
        // The runtime's C: the squashfs FUSE server (forked before any namespace is entered) and
        // system calls Glibc does not wrap (pivot_root, openat2, mount_setattr, loop ioctls).
        // It uses libsquashfuse's and libfuse3's headers (<squashfuse/ll.h>, Debian's
        // libsquashfuse-dev and libfuse3-dev) but does not link them: the FUSE server process loads
        // libsquashfuse_ll.so.0 with dlopen, so the processes that never serve FUSE (a joining
        // task, hook-run, toolbox-hook) do not map eight libraries at every start.
        .target(name: "CRuntimeShim", linkerSettings: [.linkedLibrary("dl")]),

        // MARK: Tests
        .testTarget(
            name: "EDFTests",
            dependencies: ["EDF", "ToolboxModel", "ToolboxCore"]
        ),
        .testTarget(
            name: "CommandTests",
            dependencies: [
                "edf-merge", "edf-expand", "img-pull", "img-squash", "img-build", "ns-enter", "hook-run", "toolbox-hook", "toolbox-srun", "toolbox-sbatch", "toolbox-salloc",
                "ToolboxCommands", "EDFCommands", "SlurmCommands",
                "RuntimeCommands", "OCI",
            ]
        ),
        .testTarget(name: "SystemLibrariesTests", dependencies: ["SystemLibraries"]),
        .testTarget(name: "LayersTests", dependencies: ["Layers", "SystemLibraries", "ToolboxCore"]),
        .testTarget(name: "BuildTests", dependencies: ["Build"]),
        .testTarget(name: "OCITests", dependencies: ["OCI", "ToolboxCore"]),
        .testTarget(name: "RuntimeTests", dependencies: ["Runtime", "Hooks", "ToolboxModel", "ToolboxCore"]),
    ],
    swiftLanguageModes: [.v6]
)
