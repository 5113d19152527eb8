import Foundation
import Testing

/// Bad input through the real binaries: each case checks the exact stderr, an empty stdout and the
/// exit status together.
struct BadInputTests {
    struct Case: CustomStringConvertible, Sendable {
        var name: String
        var files: [String: String] = [:]
        var tool = "edf-merge"
        var arguments: [String]
        var environment: [String: String] = [:]
        var stdin: String?
        /// Expected stderr; "$D" stands for the sandbox directory.
        var stderr: String
        var status: Int32

        var description: String { name }
    }

    static let notFoundHint = "  hint: put nothere.toml in one of these directories, add its directory to EDF_PATH, or give a path starting with ./ or /\n"
    static let syntaxHint = "  hint: an EDF is a TOML 1.0 file: key = \"value\" lines and [table] headers\n"
    static let mountForm = "  hint: write SOURCE:DESTINATION[:FLAGS], e.g. \"${SCRATCH}:/scratch:ro\"\n"

    static let cases: [Case] = [
        // MARK: NUL characters and numbers JSON cannot hold
        Case(
            name: "a NUL escape in a key (crashed the TOML library)",
            files: ["n.toml": "image = \"x\"\n[env]\n\"A\\u0000B\" = \"x\"\n"], arguments: ["./n.toml"],
            stderr: "edf-merge: error: $D/n.toml:3: a NUL character (\\u0000), which no EDF field can hold\n  hint: remove it; paths, names and values cannot contain NUL\n",
            status: 65),
        Case(
            name: "a NUL escape in a value would cut it short",
            files: ["n.toml": "image = \"x\"\nmounts = [\"/tmp\\U00000000:/x\"]\n"], tool: "edf-expand", arguments: ["./n.toml"],
            stderr: "edf-expand: error: $D/n.toml:2: a NUL character (\\u0000), which no EDF field can hold\n  hint: remove it; paths, names and values cannot contain NUL\n",
            status: 65),
        Case(
            name: "a raw NUL byte ended the file early",
            files: ["n.toml": "image = \"x\"\n\u{0}\nworkdir = 5\n"], tool: "edf-expand", arguments: ["./n.toml"],
            stderr: "edf-expand: error: $D/n.toml:2: a NUL character (\\u0000), which no EDF field can hold\n  hint: remove it; paths, names and values cannot contain NUL\n",
            status: 65),
        Case(
            name: "nan cannot be written as JSON",
            files: ["w.toml": "image = \"x\"\nratio = nan\n"], arguments: ["--json", "./w.toml"],
            stderr: "edf-merge: warning: $D/w.toml:2: key 'ratio': unknown key, kept but not used\n  hint: known keys: base_environment, image, containerfile, workdir, entrypoint, writable, mounts, devices, env, annotations\n"
                + "edf-merge: error: key 'ratio': nan cannot be written as JSON (it has no such number)\n  hint: give a finite number in the EDF, or print TOML (leave out --json)\n",
            status: 65),
        Case(
            name: "a name cannot climb out of the search directories",
            arguments: ["team/../x"],
            stderr: "edf-merge: error: environment name \"team/../x\" contains '..'\n  hint: a name stays inside the search directories; give a path starting with ./ or / for a file elsewhere\n",
            status: 65),
        Case(
            name: "two propagations on one mount",
            files: ["m.toml": "image = \"x\"\nmounts = [\"/tmp:/mnt:shared+private\"]\n"], tool: "edf-expand", arguments: ["./m.toml"],
            stderr: "edf-expand: error: $D/m.toml:2: key 'mounts[0]': mount flags in \"/tmp:/mnt:shared+private\": 'shared' and 'private' are two propagations\n  hint: keep one of them\n",
            status: 65),
        Case(
            name: "a tmpfs option on a bind mount",
            files: ["m.toml": "image = \"x\"\nmounts = [\"/tmp:/mnt:size=1G\"]\n"], tool: "edf-expand", arguments: ["./m.toml"],
            stderr: "edf-expand: error: $D/m.toml:2: key 'mounts[0]': the flag size=1G is for tmpfs mounts, not for a mount of /tmp\n  hint: remove it, or mount tmpfs:DESTINATION:size=1G\n",
            status: 65),
        Case(
            name: "edf-expand expands variables in its FILE as edf-merge does",
            tool: "edf-expand", arguments: ["./$NOPE/x.toml"],
            stderr: "edf-expand: error: undefined variable 'NOPE' in \"./$NOPE/x.toml\"\n  hint: export NOPE before running, or write ${NOPE:-default}\n",
            status: 65),
        Case(
            name: "a containerfile path that is neither absolute nor ./",
            files: ["c.toml": "image = \"x\"\ncontainerfile = \"Containerfile\"\n"], tool: "edf-expand", arguments: ["./c.toml"],
            stderr: "edf-expand: error: $D/c.toml:2: key 'containerfile': \"Containerfile\" is not an absolute path\n  hint: write ./Containerfile for a file relative to the current directory, or its absolute path\n",
            status: 65),
        // MARK: edf-merge: references, files, inheritance
        Case(
            name: "name not found lists every directory tried",
            arguments: ["nothere"], environment: ["EDF_PATH": "/nonexistent/a:/nonexistent/b"],
            stderr: "edf-merge: error: environment \"nothere\" not found; looked for nothere.toml in: /nonexistent/a, /nonexistent/b, $D/system\n" + notFoundHint,
            status: 66),
        Case(
            name: "default search path is $HOME/.edf then the system directory",
            arguments: ["nothere"],
            stderr: "edf-merge: error: environment \"nothere\" not found; looked for nothere.toml in: $D/.edf, $D/system\n" + notFoundHint,
            status: 66),
        Case(
            name: "a name ending in .toml without a path",
            files: ["env.toml": "image = \"x\""], arguments: ["env.toml"],
            stderr: "edf-merge: error: environment name \"env.toml\" ends in .toml but is not a path\n  hint: write ./env.toml for a file in the current directory, or env to search EDF_PATH\n",
            status: 65),
        Case(
            name: "empty reference", arguments: [""],
            stderr: "edf-merge: error: empty environment name\n  hint: give a name, ./file.toml or /path/file.toml\n", status: 65),
        Case(
            name: "missing file given as a path", arguments: ["./missing.toml"],
            stderr: "edf-merge: error: environment file $D/missing.toml does not exist\n  hint: check the path; relative paths are taken from the current directory ($D)\n",
            status: 66),
        Case(
            name: "a directory instead of a file", files: ["dir.toml/x": ""], arguments: ["./dir.toml"],
            stderr: "edf-merge: error: $D/dir.toml: is a directory, not a file\n  hint: give the path of a file in it\n", status: 66),
        Case(
            name: "TOML duplicate key, quoted the second time",
            files: ["d.toml": "[env]\nA = \"1\"\n\"A\" = \"2\"\n"], arguments: ["./d.toml"],
            stderr: "edf-merge: error: $D/d.toml:3: key 'env.A': given a second time (first on line 2)\n  hint: TOML allows a key or a table once per file: keep one of them\n",
            status: 65),
        Case(
            name: "TOML table given twice",
            files: ["d.toml": "[env]\nA = \"1\"\n[env]\nB = \"2\"\n"], arguments: ["./d.toml"],
            stderr: "edf-merge: error: $D/d.toml:3: key 'env': given a second time (first on line 1)\n  hint: TOML allows a key or a table once per file: keep one of them\n",
            status: 65),
        Case(
            name: "an EDF file whose name does not end in .toml", files: ["env.edf": "image = \"x\"\n"], arguments: ["./env.edf"],
            stderr: "edf-merge: error: $D/env.edf: the file name does not end in .toml\n  hint: EDF files are named NAME.toml (that is also how EDF_PATH finds NAME): rename it\n",
            status: 65),
        Case(
            name: "edf-expand: an EDF file whose name does not end in .toml", files: ["env.edf": "image = \"x\"\n"], tool: "edf-expand",
            arguments: ["./env.edf"],
            stderr: "edf-expand: error: $D/env.edf: the file name does not end in .toml\n  hint: EDF files are named NAME.toml (that is also how EDF_PATH finds NAME): rename it\n",
            status: 65),
        Case(
            name: "an annotation given as a quoted key and as nested keys",
            files: ["a.toml": "[annotations]\n\"com.hooks.x\" = \"a\"\ncom.hooks.x = \"b\"\n"], arguments: ["./a.toml"],
            stderr: "edf-merge: error: $D/a.toml:2: key 'annotations.com.hooks.x': the annotation is given twice: once as a quoted key with dots, once as nested keys or a table\n  hint: keep one of them; com.hooks.x.enabled = \"true\" and [annotations.com.hooks.x] enabled = \"true\" are the same annotation\n",
            status: 65),
        Case(
            name: "TOML syntax error with line and column",
            files: ["s.toml": "image = \"ubuntu\"\nmounts = [\"/a:/b\"\n"], arguments: ["./s.toml"],
            stderr: "edf-merge: error: $D/s.toml:2:19: TOML syntax error: Error while parsing array: encountered end-of-file\n" + syntaxHint,
            status: 65),
        Case(
            name: "TOML duplicate key",
            files: ["d.toml": "image = \"a\"\nimage = \"b\"\n"], arguments: ["./d.toml"],
            stderr: "edf-merge: error: $D/d.toml:2: key 'image': given a second time (first on line 1)\n  hint: TOML allows a key or a table once per file: keep one of them\n",
            status: 65),
        Case(
            name: "not UTF-8", files: ["latin1.toml": "image = \"caf\u{FFFD}"], arguments: ["./latin1.toml"],
            stderr: "edf-merge: error: $D/latin1.toml: not valid UTF-8 text\n  hint: save it as UTF-8 (iconv -t UTF-8 converts it)\n", status: 65),
        Case(
            name: "cycle prints the chain",
            files: ["a.toml": "base_environment = \"./b.toml\"\n", "b.toml": "image = \"x\"\nbase_environment = [\"./a.toml\"]\n"],
            arguments: ["./a.toml"],
            stderr: "edf-merge: error: $D/b.toml:2: key 'base_environment': cycle: a.toml -> b.toml -> a.toml\n  hint: remove one of these base_environment entries\n",
            status: 65),
        Case(
            name: "self reference", files: ["self.toml": "base_environment = \"./self.toml\"\n"], arguments: ["./self.toml"],
            stderr: "edf-merge: error: $D/self.toml:1: key 'base_environment': cycle: self.toml -> self.toml\n  hint: remove one of these base_environment entries\n",
            status: 65),
        Case(
            name: "parent not found names the chain",
            files: ["top.toml": "base_environment = \"./mid.toml\"\n", "mid.toml": "image = \"x\"\nbase_environment = [\"nothere\"]\n"],
            arguments: ["./top.toml"],
            stderr: "edf-merge: error: $D/mid.toml:2: key 'base_environment': environment \"nothere\" not found; looked for nothere.toml in: $D/.edf, $D/system\n  chain: top.toml -> mid.toml\n" + notFoundHint,
            status: 66),
        Case(
            name: "a type error in a parent names the chain",
            files: ["top.toml": "base_environment = \"./parent.toml\"\n", "parent.toml": "writable = 0\n"],
            arguments: ["./top.toml"],
            stderr: "edf-merge: error: $D/parent.toml:1: key 'writable': expected a boolean (true or false), found an integer 0\n  chain: top.toml -> parent.toml\n  hint: write writable = true or writable = false\n",
            status: 65),
        Case(
            name: "more than 10 levels of base_environment",
            files: Dictionary(uniqueKeysWithValues: (1...11).map { ("l\($0).toml", "base_environment = \"./l\($0 + 1).toml\"\n") }),
            arguments: ["./l1.toml"],
            stderr: "edf-merge: error: $D/l10.toml:1: key 'base_environment': base_environment nesting is deeper than 10 levels ($D/l11.toml)\n  chain: l1.toml -> l2.toml -> l3.toml -> l4.toml -> l5.toml -> l6.toml -> l7.toml -> l8.toml -> l9.toml -> l10.toml\n  hint: flatten the chain of base environments to at most 10 files\n",
            status: 65),
        Case(
            name: "undefined variable in base_environment",
            files: ["v.toml": "base_environment = \"${NOPE}/base.toml\"\n"], arguments: ["./v.toml"],
            stderr: "edf-merge: error: $D/v.toml:1: key 'base_environment': undefined variable 'NOPE' in \"${NOPE}/base.toml\"\n  hint: export NOPE before running, or write ${NOPE:-default}\n",
            status: 65),
        Case(
            name: "base_environment of the wrong type", files: ["b.toml": "base_environment = 5\n"], arguments: ["./b.toml"],
            stderr: "edf-merge: error: $D/b.toml:1: key 'base_environment': expected a string or an array of strings, found an integer 5\n  hint: write base_environment = \"name\" or base_environment = [\"a\", \"b\"]\n",
            status: 65),
        Case(
            name: "image of the wrong type", files: ["i.toml": "image = [\"ubuntu\"]\n"], arguments: ["./i.toml"],
            stderr: "edf-merge: error: $D/i.toml:1: key 'image': expected a string, found an array [\"ubuntu\"]\n  hint: write image = \"...\" with quotes\n",
            status: 65),
        Case(
            name: "writable as a quoted string", files: ["w.toml": "image = \"x\"\nwritable = \"false\"\n"], arguments: ["./w.toml"],
            stderr: "edf-merge: error: $D/w.toml:2: key 'writable': expected a boolean (true or false), found a string \"false\"\n  hint: write writable = false, without quotes\n",
            status: 65),
        Case(
            name: "entrypoint as a number", files: ["e.toml": "entrypoint = 1\n"], arguments: ["./e.toml"],
            stderr: "edf-merge: error: $D/e.toml:1: key 'entrypoint': expected a boolean (true or false), found an integer 1\n  hint: write entrypoint = true or entrypoint = false\n",
            status: 65),
        Case(
            name: "mounts as a string", files: ["m.toml": "mounts = \"/a:/b\"\n"], arguments: ["./m.toml"],
            stderr: "edf-merge: error: $D/m.toml:1: key 'mounts': expected an array of strings, found a string \"/a:/b\"\n  hint: write mounts = [\"/a:/b\"]\n",
            status: 65),
        Case(
            name: "a mount that is not a string", files: ["m.toml": "mounts = [\"/a:/b\", 3]\n"], arguments: ["./m.toml"],
            stderr: "edf-merge: error: $D/m.toml:1: key 'mounts[1]': expected a string, found an integer 3\n  hint: quote every item: mounts = [\"...\", \"...\"]\n",
            status: 65),
        Case(
            name: "env value that is not a string", files: ["n.toml": "[env]\nOMP_NUM_THREADS = 8\n"], arguments: ["./n.toml"],
            stderr: "edf-merge: error: $D/n.toml:2: key 'env.OMP_NUM_THREADS': expected a string, found an integer 8\n  hint: values are strings: write OMP_NUM_THREADS = \"8\"\n",
            status: 65),
        Case(
            name: "env as a string", files: ["n.toml": "env = \"A=1\"\n"], arguments: ["./n.toml"],
            stderr: "edf-merge: error: $D/n.toml:1: key 'env': expected a table, found a string \"A=1\"\n  hint: write the variables under an [env] header, one NAME = \"value\" per line\n",
            status: 65),
        Case(
            name: "annotation that is an array", files: ["a.toml": "[annotations]\ncom.hooks.ssh.enabled = [true]\n"], arguments: ["./a.toml"],
            stderr: "edf-merge: error: $D/a.toml:2: key 'annotations.com.hooks.ssh.enabled': expected a string, found an array [true]\n  hint: annotation values are strings, e.g. enabled = \"true\"\n",
            status: 65),
        Case(
            name: "every type error of a file in one run",
            files: ["t.toml": "image = 1\nworkdir = false\n[env]\nA = 1\nB = \"ok\"\n"], arguments: ["./t.toml"],
            stderr: """
                edf-merge: error: $D/t.toml:4: key 'env.A': expected a string, found an integer 1
                  hint: values are strings: write A = "1"
                edf-merge: error: $D/t.toml:1: key 'image': expected a string, found an integer 1
                  hint: write image = "..." with quotes
                edf-merge: error: $D/t.toml:2: key 'workdir': expected a string, found a boolean false
                  hint: write workdir = "..." with quotes

                """,
            status: 65),
        Case(
            name: "unknown option", arguments: ["--bogus", "x"],
            stderr: "edf-merge: error: Unknown option '--bogus'\nUsage: edf-merge <references> ... [--json] [--explain]\n  See 'edf-merge --help' for more information.\n",
            status: 64),
        Case(
            // ns-enter checks its options after swift-argument-parser has looked for unknown ones.
            name: "ns-enter: unknown option", tool: "ns-enter", arguments: ["--bogus"],
            stderr: "ns-enter: error: Unknown option '--bogus'\nUsage: ns-enter [<options>] -- [<command> ...]\n  See 'ns-enter --help' for more information.\n",
            status: 64),
        Case(
            name: "ns-enter: nothing to run in", tool: "ns-enter", arguments: ["--", "true"],
            stderr: "ns-enter: error: say what to run in: --environment FILE, --environment-variable NAME, --image FILE or --join PID\nUsage: ns-enter [<options>] -- [<command> ...]\n  See 'ns-enter --help' for more information.\n",
            status: 64),

        // MARK: edf-expand: values
        Case(
            name: "undefined variable in env", files: ["u.toml": "[env]\nDATA = \"${UNDEFINED_VAR}/data\"\n"], tool: "edf-expand",
            arguments: ["u.toml"],
            stderr: "edf-expand: error: $D/u.toml:2: key 'env.DATA': undefined variable 'UNDEFINED_VAR' in \"${UNDEFINED_VAR}/data\"\n  hint: export UNDEFINED_VAR before running, or write ${UNDEFINED_VAR:-default}\n",
            status: 65),
        Case(
            name: "lone dollar", files: ["d.toml": "[annotations]\nprice = \"5$\"\n"], tool: "edf-expand", arguments: ["d.toml"],
            stderr: "edf-expand: error: $D/d.toml:2: key 'annotations.price': '$' not followed by a variable name in \"5$\"\n  hint: write $$ for a literal '$'\n",
            status: 65),
        Case(
            name: "unterminated reference", files: ["d.toml": "workdir = \"${HOME\"\n"], tool: "edf-expand", arguments: ["d.toml"],
            stderr: "edf-expand: error: $D/d.toml:1: key 'workdir': '${' without a closing '}' in \"${HOME\"\n  hint: close the reference: ${NAME}\n",
            status: 65),
        Case(
            name: "invalid image reference", files: ["i.toml": "image = \"NVIDIA/PyTorch:24\"\n"], tool: "edf-expand", arguments: ["i.toml"],
            stderr: "edf-expand: error: $D/i.toml:1: key 'image': invalid repository \"NVIDIA/PyTorch\" in image reference \"NVIDIA/PyTorch:24\": uppercase letters are not allowed\n  hint: repository names are lowercase letters, digits and . _ - separated by /, e.g. nvidia/pytorch\n",
            status: 65),
        Case(
            name: "variable name with a line break", files: ["n.toml": "image = \"u\"\n[env]\n\"C\\nD\" = \"2\"\nOK = \"3\"\n"],
            tool: "edf-expand", arguments: ["n.toml"],
            stderr: """
                edf-expand: error: $D/n.toml:2: key 'env.C\\x0aD': invalid variable name "C\\x0aD"
                  hint: a variable name is not empty and has no '=' or control character (a line break)

                """,
            status: 65),
        Case(
            name: "undefined variable in an image with a password", files: ["p.toml": "image = \"bob:s3cret@nvcr.io#${NOPE}\"\n"], tool: "edf-expand",
            arguments: ["p.toml"],
            stderr: "edf-expand: error: $D/p.toml:1: key 'image': undefined variable 'NOPE' in \"bob:***@nvcr.io#${NOPE}\"\n  hint: export NOPE before running, or write ${NOPE:-default}\n",
            status: 65),
        Case(
            name: "local image that does not exist", files: ["i.toml": "image = \"./missing.sqsh\"\n"], tool: "edf-expand", arguments: ["i.toml"],
            stderr: "edf-expand: error: $D/i.toml:1: key 'image': image file $D/missing.sqsh does not exist\n  hint: a value starting with / or . is a local squashfs file; a registry image has no leading / or .\n",
            status: 66),
        Case(
            name: "relative workdir", files: ["w.toml": "workdir = \"work\"\n"], tool: "edf-expand", arguments: ["w.toml"],
            stderr: "edf-expand: error: $D/w.toml:1: key 'workdir': \"work\" is not an absolute path\n  hint: workdir is a directory inside the container, e.g. workdir = \"/workspace\"\n",
            status: 65),
        Case(
            name: "mount source that does not exist", files: ["m.toml": "mounts = [\"/nonexistent/data:/data\"]\n"], tool: "edf-expand",
            arguments: ["m.toml"],
            stderr: "edf-expand: error: $D/m.toml:1: key 'mounts[0]': source /nonexistent/data does not exist\n  hint: create it first, or fix the path (relative sources are taken from $D)\n",
            status: 66),
        Case(
            name: "mount destination not absolute", files: ["m.toml": "mounts = [\"/tmp:data\"]\n"], tool: "edf-expand", arguments: ["m.toml"],
            stderr: "edf-expand: error: $D/m.toml:1: key 'mounts[0]': destination \"data\" is not an absolute path\n  hint: write the path inside the container from /, e.g. /data\n",
            status: 65),
        Case(
            name: "mount with too many colons", files: ["m.toml": "mounts = [\"/tmp:/a:ro:/b\"]\n"], tool: "edf-expand", arguments: ["m.toml"],
            stderr: "edf-expand: error: $D/m.toml:1: key 'mounts[0]': too many ':' in \"/tmp:/a:ro:/b\" (paths cannot contain ':')\n" + mountForm,
            status: 65),
        Case(
            name: "mount with an empty part", files: ["m.toml": "mounts = [\"/tmp::ro\"]\n"], tool: "edf-expand", arguments: ["m.toml"],
            stderr: "edf-expand: error: $D/m.toml:1: key 'mounts[0]': empty destination in \"/tmp::ro\"\n" + mountForm, status: 65),
        Case(
            name: "an error in a multi-line array names the element's line",
            files: ["m.toml": "image = \"x\"\nmounts = [\n  \"/tmp:/a\",\n  \"data:/b\",\n]\n"], tool: "edf-expand", arguments: ["m.toml"],
            stderr: "edf-expand: error: $D/m.toml:4: key 'mounts[1]': source \"data\" is not an absolute path\n  hint: start the source with / or ./ (relative to the current directory), or write tmpfs or umount\n",
            status: 65),
        Case(
            name: "contradicting mount flags", files: ["m.toml": "mounts = [\"/tmp:/a:ro+rw\"]\n"], tool: "edf-expand", arguments: ["m.toml"],
            stderr: "edf-expand: error: $D/m.toml:1: key 'mounts[0]': mount flags 'ro' and 'rw' in \"/tmp:/a:ro+rw\" contradict each other\n  hint: keep one of them\n",
            status: 65),
        Case(
            name: "a tmpfs size that is not one", files: ["m.toml": "mounts = [\"tmpfs:/t:size=abc\"]\n"], tool: "edf-expand", arguments: ["m.toml"],
            stderr: "edf-expand: error: $D/m.toml:1: key 'mounts[0]': mount flag 'size=abc' in \"tmpfs:/t:size=abc\": not a size (a number, with k, m, g or % after it)\n  hint: e.g. size=1G, mode=0755, uid=1000, x-create=dir\n",
            status: 65),
        Case(
            name: "a mount over the container's root", files: ["m.toml": "mounts = [\"/tmp:/\"]\n"], tool: "edf-expand", arguments: ["m.toml"],
            stderr: "edf-expand: error: $D/m.toml:1: key 'mounts[0]': \"/tmp:/\" would mount over the container's root\n  hint: the image is the root: mount below it, e.g. /data\n",
            status: 65),
        Case(
            name: "umount with flags", files: ["m.toml": "mounts = [\"umount:/h:ro\"]\n"], tool: "edf-expand", arguments: ["m.toml"],
            stderr: "edf-expand: error: $D/m.toml:1: key 'mounts[0]': \"umount:/h:ro\": umount takes a destination and no flags\n  hint: write \"umount:/path\" to unmount /path in the container\n",
            status: 65),
        Case(
            name: "mount source not a path", files: ["m.toml": "mounts = [\"data:/data\"]\n"], tool: "edf-expand", arguments: ["m.toml"],
            stderr: "edf-expand: error: $D/m.toml:1: key 'mounts[0]': source \"data\" is not an absolute path\n  hint: start the source with / or ./ (relative to the current directory), or write tmpfs or umount\n",
            status: 65),
        Case(
            name: "sqsh source that is a directory", files: ["m.toml": "mounts = [\"/tmp:/data:sqsh\"]\n"], tool: "edf-expand", arguments: ["m.toml"],
            stderr: "edf-expand: error: $D/m.toml:1: key 'mounts[0]': sqsh source /tmp is not a regular file\n  hint: the sqsh flag mounts a squashfs image file\n",
            status: 65),
        Case(
            name: "unknown mount flag", files: ["m.toml": "mounts = [\"/tmp:/data:ro+privat\"]\n"], tool: "edf-expand", arguments: ["m.toml"],
            stderr: "edf-expand: error: $D/m.toml:1: key 'mounts[0]': unknown mount flag 'privat' in \"/tmp:/data:ro+privat\"\n  hint: flags are joined with + or ,; known: sqsh, ro, rw, nosuid, suid, nodev, dev, noexec, exec, bind, rbind, private, rprivate, shared, rshared, slave, rslave, unbindable, runbindable, noatime, atime, relatime, norelatime, strictatime, nodiratime, size=..., mode=..., nr_inodes=..., nr_blocks=..., uid=..., gid=..., x-create=...\n",
            status: 65),
        Case(
            name: "tmpfs with sqsh", files: ["m.toml": "mounts = [\"tmpfs:/scratch:sqsh\"]\n"], tool: "edf-expand", arguments: ["m.toml"],
            stderr: "edf-expand: error: $D/m.toml:1: key 'mounts[0]': a tmpfs mount cannot have the flag sqsh\n  hint: remove sqsh, or give a squashfs file as the source\n",
            status: 65),
        Case(
            name: "JSON syntax error on stdin", tool: "edf-expand", arguments: [], stdin: "{\"image\": \"ubuntu\"",
            stderr: "edf-expand: error: <stdin>: JSON syntax error: Unexpected end of file during JSON parse.\n  hint: JSON input is expected to be what edf-merge --json prints: one object\n",
            status: 65),
        Case(
            name: "annotation name with an empty part", files: ["a.toml": "image = \"x\"\n[annotations]\n\"com..x\" = \"1\"\n"], arguments: ["./a.toml"],
            stderr: "edf-merge: error: $D/a.toml:3: key 'annotations.com..x': not a usable annotation name\n  hint: annotation names are dot-separated words without spaces, e.g. com.hooks.ssh.enabled\n",
            status: 65),
        Case(
            name: "a child's bad mount numbered in its own file", files: ["p.toml": "image = \"x\"\nmounts = [\"/tmp:/a\", \"/tmp:/b\"]\n", "c.toml": "base_environment = \"./p.toml\"\nmounts = [\"/nonexistent:/c\"]\n"],
            tool: "edf-expand", arguments: ["./c.toml"],
            stderr: "edf-expand: error: $D/c.toml:2: key 'mounts[0]': source /nonexistent does not exist\n  hint: create it first, or fix the path (relative sources are taken from $D)\n",
            status: 66),
        Case(
            name: "two access-time modes", files: ["m.toml": "mounts = [\"/tmp:/d:ro+relatime+noatime\"]\n"], tool: "edf-expand", arguments: ["m.toml"],
            stderr: "edf-expand: error: $D/m.toml:1: key 'mounts[0]': mount flags in \"/tmp:/d:ro+relatime+noatime\": 'relatime' and 'noatime' are two access-time modes\n  hint: keep one of them\n",
            status: 65),
        Case(
            name: "empty item in base_environment", files: ["p.toml": "image = \"x\"\n", "c.toml": "base_environment = [\"./p.toml\",\n \"\"]\n"],
            arguments: ["./c.toml"],
            stderr: "edf-merge: error: $D/c.toml:2: key 'base_environment[1]': an empty environment name\n  hint: remove the empty item (base_environment = \"\" alone means no base)\n",
            status: 65),
        Case(
            name: "JSON key given twice", tool: "edf-expand", arguments: [], stdin: "{\"image\": \"a\",\n \"env\": {\"A\": \"1\", \"\\u0041\": \"2\"}}",
            stderr: "edf-expand: error: <stdin>:2: key 'env.A': given a second time (first on line 2)\n  hint: a key may appear once in an object: keep one of them\n",
            status: 65),
        Case(
            name: "JSON null inside an array", tool: "edf-expand", arguments: [], stdin: "{\"image\": null,\n\"mounts\": [\"/a:/b\",\n null]}\n",
            stderr: "edf-expand: error: <stdin>:3: key 'mounts[1]': null, which an EDF cannot hold here\n  hint: remove the entry (only a top-level key may be null: not set)\n",
            status: 65),
        Case(
            name: "JSON NUL character in a key", tool: "edf-expand", arguments: [], stdin: "{\"env\": {\"A\\u0000B\": \"x\"}}",
            stderr: "edf-expand: error: <stdin>:1: key 'env.A\\u0000B': a NUL character (\\u0000), which no EDF field can hold\n  hint: remove it; paths, names and values cannot contain NUL\n",
            status: 65),
        Case(
            name: "JSON of the wrong type", tool: "edf-expand", arguments: ["-"], stdin: "{\"writable\": \"yes\"}",
            stderr: "edf-expand: error: <stdin>: key 'writable': expected a boolean (true or false), found a string \"yes\"\n  hint: write writable = true or writable = false\n",
            status: 65),
        Case(
            name: "TOML syntax error on stdin", tool: "edf-expand", arguments: [], stdin: "image = ubuntu\n",
            stderr: "edf-expand: error: <stdin>:1:9: TOML syntax error: Error while parsing value: could not determine value type\n" + syntaxHint,
            status: 65),
        Case(
            name: "every error of a file in one run, sorted by line",
            files: ["all.toml": "image = \"Bad\"\nworkdir = \"rel\"\nwritable = \"no\"\nmounts = [\"/tmp:rel\", \"/nonexistent:/x\"]\n[env]\nX = \"$NOPE\"\n"],
            tool: "edf-expand", arguments: ["all.toml"],
            stderr: """
                edf-expand: error: $D/all.toml:3: key 'writable': expected a boolean (true or false), found a string "no"
                  hint: write writable = true or writable = false
                edf-expand: error: $D/all.toml:1: key 'image': invalid repository "Bad" in image reference "Bad": uppercase letters are not allowed
                  hint: repository names are lowercase letters, digits and . _ - separated by /, e.g. nvidia/pytorch
                edf-expand: error: $D/all.toml:2: key 'workdir': "rel" is not an absolute path
                  hint: workdir is a directory inside the container, e.g. workdir = "/workspace"
                edf-expand: error: $D/all.toml:4: key 'mounts[0]': destination "rel" is not an absolute path
                  hint: write the path inside the container from /, e.g. /data
                edf-expand: error: $D/all.toml:4: key 'mounts[1]': source /nonexistent does not exist
                  hint: create it first, or fix the path (relative sources are taken from $D)
                edf-expand: error: $D/all.toml:6: key 'env.X': undefined variable 'NOPE' in "$NOPE"
                  hint: export NOPE before running, or write ${NOPE:-default}

                """,
            status: 65),
        Case(
            name: "check mode reports errors too", files: ["c.toml": "workdir = \"rel\"\n"], tool: "edf-expand", arguments: ["--check", "c.toml"],
            stderr: "edf-expand: error: $D/c.toml:1: key 'workdir': \"rel\" is not an absolute path\n  hint: workdir is a directory inside the container, e.g. workdir = \"/workspace\"\n",
            status: 65),
        Case(
            name: "edf-expand of a missing file", tool: "edf-expand", arguments: ["./missing.toml"],
            stderr: "edf-expand: error: $D/missing.toml: no such file\n  hint: check the path (relative paths are taken from the current directory)\n", status: 66),
    ]

    @Test(arguments: cases)
    func badInput(_ c: Case) throws {
        let box = try Sandbox()
        for (name, text) in c.files {
            // U+FFFD in a test file stands for the byte 0xE9 (Latin-1 "é"), which is not UTF-8.
            let bytes = text.contains("\u{FFFD}")
                ? text.replacingOccurrences(of: "\u{FFFD}", with: "").utf8 + [0xE9, 0x22] : Array(text.utf8)
            try box.write(name, bytes)
        }
        let result = try box.run(c.tool, c.arguments, environment: c.environment, stdin: c.stdin)
        #expect(result.stderr == c.stderr.replacingOccurrences(of: "$D", with: box.path), "\(result)")
        #expect(result.status == c.status, "\(result)")
        if c.status != 0 { #expect(result.stdout.isEmpty, "\(result)") }
    }
}
