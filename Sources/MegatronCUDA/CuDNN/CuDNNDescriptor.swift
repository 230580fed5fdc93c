import CCUDA

/// One cuDNN backend descriptor, destroyed when released. Attributes are set with typed helpers
/// so each call passes the element type cuDNN expects for that attribute.
final class CuDNNDescriptor {
    let cudnn: CuDNNLibrary
    let type: CuDNNBackend.DescriptorType
    let pointer: cudnnBackendDescriptor_t

    init(_ cudnn: CuDNNLibrary, _ type: CuDNNBackend.DescriptorType) throws {
        var made: cudnnBackendDescriptor_t?
        try cudnn.check(cudnn.table.cudnnBackendCreateDescriptor(type.rawValue, &made), "cudnnBackendCreateDescriptor(\(type))")
        guard let made else {
            throw CuDNNError(call: "cudnnBackendCreateDescriptor(\(type))", status: -1, message: "returned no descriptor")
        }
        (self.cudnn, self.type, self.pointer) = (cudnn, type, made)
    }

    deinit { _ = cudnn.table.cudnnBackendDestroyDescriptor(pointer) }

    func finalize() throws {
        try cudnn.check(cudnn.table.cudnnBackendFinalize(pointer), "cudnnBackendFinalize(\(type))")
    }

    /// Sets `attribute` to `values`, an array of `elementType` elements.
    func set<T>(_ attribute: CuDNNBackend.Attribute, _ elementType: CuDNNBackend.AttributeType, _ values: [T]) throws {
        let status = values.withUnsafeBytes { bytes in
            cudnn.table.cudnnBackendSetAttribute(pointer, attribute.rawValue, elementType.rawValue, Int64(values.count), bytes.baseAddress!)
        }
        try cudnn.check(status, "cudnnBackendSetAttribute(\(type), \(attribute))")
    }

    func set(_ attribute: CuDNNBackend.Attribute, int64 values: [Int64]) throws { try set(attribute, .int64, values) }
    func set(_ attribute: CuDNNBackend.Attribute, bool value: Bool) throws { try set(attribute, .boolean, [value]) }
    func set(_ attribute: CuDNNBackend.Attribute, dataType: CuDNNBackend.DataType) throws { try set(attribute, .dataType, [dataType.rawValue]) }
    func set(_ attribute: CuDNNBackend.Attribute, descriptors: [CuDNNDescriptor]) throws {
        try set(attribute, .backendDescriptor, descriptors.map { Optional($0.pointer) })
    }
    func set(_ attribute: CuDNNBackend.Attribute, handle: cudnnHandle_t) throws { try set(attribute, .handle, [Optional(handle)]) }

    /// Reads one INT64 attribute of a finalized descriptor.
    func int64(_ attribute: CuDNNBackend.Attribute) throws -> Int64 {
        var value: Int64 = 0, count: Int64 = 0
        try cudnn.check(cudnn.table.cudnnBackendGetAttribute(pointer, attribute.rawValue, CuDNNBackend.AttributeType.int64.rawValue,
                                                              1, &count, &value),
                        "cudnnBackendGetAttribute(\(type), \(attribute))")
        return value
    }
}
