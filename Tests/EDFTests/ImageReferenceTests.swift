import Testing
import ToolboxModel

struct ImageReferenceTests {
    static let digest = "sha256:" + String(repeating: "ab", count: 32)

    // (input, registry, repository, tag, digest, user)
    static let valid: [(String, String, String, String?, String?, String?)] = [
        ("ubuntu", "registry-1.docker.io", "library/ubuntu", "latest", nil, nil),
        ("ubuntu:24.04", "registry-1.docker.io", "library/ubuntu", "24.04", nil, nil),
        ("library/ubuntu:24.04", "registry-1.docker.io", "library/ubuntu", "24.04", nil, nil),
        ("docker.io#library/ubuntu:24.04", "registry-1.docker.io", "library/ubuntu", "24.04", nil, nil),
        ("docker.io/ubuntu", "registry-1.docker.io", "library/ubuntu", "latest", nil, nil),
        ("index.docker.io/library/ubuntu:22.04", "registry-1.docker.io", "library/ubuntu", "22.04", nil, nil),
        ("nvcr.io#nvidia/pytorch:22.12-py3", "nvcr.io", "nvidia/pytorch", "22.12-py3", nil, nil),
        ("nvcr.io/nvidia/pytorch:24.01-py3", "nvcr.io", "nvidia/pytorch", "24.01-py3", nil, nil),
        ("quay.io#madeeks/osu-mb:6.2-mpich4.1-ubuntu22.04-arm64", "quay.io", "madeeks/osu-mb", "6.2-mpich4.1-ubuntu22.04-arm64", nil, nil),
        ("localhost:5000/test/img:tag", "localhost:5000", "test/img", "tag", nil, nil),
        ("[::1]:5000/test/img:tag", "[::1]:5000", "test/img", "tag", nil, nil),
        ("[fd00::5]#test/img", "[fd00::5]", "test/img", "latest", nil, nil),
        ("localhost/test/img", "localhost", "test/img", "latest", nil, nil),
        ("127.0.0.1:5000#test/img", "127.0.0.1:5000", "test/img", "latest", nil, nil),
        ("ghcr.io/owner/deep/path/image:v1.0_rc", "ghcr.io", "owner/deep/path/image", "v1.0_rc", nil, nil),
        ("ubuntu@\(digest)", "registry-1.docker.io", "library/ubuntu", nil, digest, nil),
        ("nvcr.io/nvidia/pytorch:24.01-py3@\(digest)", "nvcr.io", "nvidia/pytorch", "24.01-py3", digest, nil),
        ("alice@nvcr.io#nvidia/pytorch:24.01-py3", "nvcr.io", "nvidia/pytorch", "24.01-py3", nil, "alice"),
        ("alice@ubuntu:24.04", "registry-1.docker.io", "library/ubuntu", "24.04", nil, "alice"),
        ("alice@ubuntu@\(digest)", "registry-1.docker.io", "library/ubuntu", nil, digest, "alice"),
        ("docker://nvcr.io#nvidia/pytorch:24.01-py3", "nvcr.io", "nvidia/pytorch", "24.01-py3", nil, nil),
        ("docker://ubuntu", "registry-1.docker.io", "library/ubuntu", "latest", nil, nil),
        ("jfrog.svc.cscs.ch/docker-ci-ext/ngc-pytorch:26.02-py3-alps6", "jfrog.svc.cscs.ch", "docker-ci-ext/ngc-pytorch", "26.02-py3-alps6", nil, nil),
    ]

    @Test(arguments: valid)
    func parses(_ c: (String, String, String, String?, String?, String?)) throws {
        let ref = try ImageReference.parse(c.0)
        #expect(ref.registry == c.1)
        #expect(ref.repository == c.2)
        #expect(ref.tag == c.3)
        #expect(ref.digest == c.4)
        #expect(ref.user == c.5)
        var expected = "\(c.1)/\(c.2)"
        if let tag = c.3 { expected += ":\(tag)" }
        if let digest = c.4 { expected += "@\(digest)" }
        #expect(ref.reference == expected)
        // The normalised reference parses to itself.
        #expect(try ImageReference.parse(ref.reference).reference == ref.reference)
    }

    static let invalid: [(String, String)] = [
        ("", "empty image reference"),
        ("Ubuntu", "invalid repository \"Ubuntu\" in image reference \"Ubuntu\": uppercase letters are not allowed"),
        ("ubuntu:", "invalid tag \"\" in image reference \"ubuntu:\""),
        ("ubuntu:-x", "invalid tag \"-x\" in image reference \"ubuntu:-x\""),
        ("ubuntu@sha256:abc", "invalid digest \"sha256:abc\" in image reference \"ubuntu@sha256:abc\""),
        ("ubuntu@sha512:abc", "unsupported digest \"sha512:abc\" in image reference \"ubuntu@sha512:abc\""),
        ("#ubuntu", "empty registry before '#' in image reference \"#ubuntu\""),
        ("a#b#c", "more than one '#' in image reference \"a#b#c\""),
        // USER:PASSWORD written after the image: the password is not repeated.
        ("reg.io:5000/team/app:1@alice:S3cret", "invalid user in image reference \"reg.io:5000/team/app:1@...\""),
        ("nvcr.io/", "missing repository in image reference \"nvcr.io/\""),
        ("my image", "image reference \"my image\" contains whitespace"),
        ("reg_istry.io:99999999/x", "invalid registry \"reg_istry.io:99999999\" in image reference \"reg_istry.io:99999999/x\""),
        ("podman://ubuntu", "unsupported scheme \"podman://\" in image reference \"podman://ubuntu\""),
        ("foo//bar", "invalid repository \"foo//bar\" in image reference \"foo//bar\""),
        ("reg.io:99999/x", "invalid registry \"reg.io:99999\" in image reference \"reg.io:99999/x\""),
        ("-reg.io/x", "invalid registry \"-reg.io\" in image reference \"-reg.io/x\""),
        ("[::1]:0/x", "invalid registry \"[::1]:0\" in image reference \"[::1]:0/x\""),
        ("[zz::1]/x", "invalid registry \"[zz::1]\" in image reference \"[zz::1]/x\""),
        ("[::1]5000/x", "invalid registry \"[::1]5000\" in image reference \"[::1]5000/x\""),
        ("foo___bar", "invalid repository \"foo___bar\" in image reference \"foo___bar\""),
        ("foo..bar", "invalid repository \"foo..bar\" in image reference \"foo..bar\""),
        // A password written into a reference is refused, and never repeated.
        ("alice:S3cret@nvcr.io#nvidia/pytorch:24.01", "a password in image reference \"alice:***@nvcr.io#nvidia/pytorch:24.01\""),
        ("https://alice:S3cret@nvcr.io/nvidia/pytorch", "unsupported scheme \"https://\" in image reference \"https://alice:***@nvcr.io/nvidia/pytorch\""),
        ("alice:S3cret@nvcr.io#Nvidia", "a password in image reference \"alice:***@nvcr.io#Nvidia\""),
        ("reg.io:5000/x@sha256:abc", "invalid digest \"sha256:abc\" in image reference \"reg.io:5000/x@sha256:abc\""),
    ]

    @Test(arguments: invalid)
    func rejects(_ c: (String, String)) {
        #expect {
            _ = try ImageReference.parse(c.0)
        } throws: { error in
            (error as? ImageReference.ParseError)?.message == c.1
        }
    }
}
