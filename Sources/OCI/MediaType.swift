/// Media types of the OCI image spec and of Docker's image manifest v2 schema 2.
public enum MediaType {
    public static let ociManifest = "application/vnd.oci.image.manifest.v1+json"
    public static let ociIndex = "application/vnd.oci.image.index.v1+json"
    public static let ociConfig = "application/vnd.oci.image.config.v1+json"
    public static let ociLayer = "application/vnd.oci.image.layer.v1.tar"
    public static let ociLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip"
    public static let ociLayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd"
    public static let ociLayerNondistributableGzip = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"

    public static let dockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
    public static let dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
    public static let dockerConfig = "application/vnd.docker.container.image.v1+json"
    public static let dockerLayerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    public static let dockerLayerForeignGzip = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

    /// Single-platform manifests.
    public static let manifests: Set<String> = [ociManifest, dockerManifest]
    /// Multi-platform indexes.
    public static let indexes: Set<String> = [ociIndex, dockerManifestList]
    /// Every manifest type img-pull accepts, for the Accept header.
    public static let acceptedManifests = [ociIndex, dockerManifestList, ociManifest, dockerManifest]

    /// How a layer is compressed, from its media type.
    public enum Compression: String, Sendable, Codable {
        case none, gzip, zstd
    }

    /// The compression of a layer media type, or nil when the type is not a layer we can unpack.
    public static func layerCompression(_ mediaType: String) -> Compression? {
        switch mediaType {
        case ociLayer, "application/vnd.oci.image.layer.nondistributable.v1.tar", "application/vnd.docker.image.rootfs.diff.tar":
            return Compression.none
        case ociLayerGzip, ociLayerNondistributableGzip, dockerLayerGzip, dockerLayerForeignGzip:
            return .gzip
        case ociLayerZstd, "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd":
            return .zstd
        default:
            return nil
        }
    }
}
