import Foundation

/// A failed JSON Patch (RFC 6902) or JSON Pointer (RFC 6901) operation.
public struct JSONPatchError: Error, Hashable, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

extension JSON {
    /// Applies an RFC 6902 JSON Patch: an array of `add`, `remove`, `replace`,
    /// `move`, `copy` and `test` operations. All or nothing: on error, `self` is unchanged.
    public func applying(patch operations: JSON) throws -> JSON {
        guard case .array(let ops) = operations else { throw JSONPatchError("a JSON Patch must be an array of operations") }
        var document = self
        for (i, op) in ops.enumerated() {
            guard case .object(let fields) = op else { throw JSONPatchError("operation \(i) is not an object") }
            guard let name = fields["op"]?.stringValue else { throw JSONPatchError("operation \(i) has no \"op\"") }
            guard let path = fields["path"]?.stringValue else { throw JSONPatchError("operation \(i) has no \"path\"") }
            let pointer = try JSON.pointerTokens(path)
            switch name {
            case "add":
                guard let value = fields["value"] else { throw JSONPatchError("operation \(i) (add) has no \"value\"") }
                document = try document.adding(value, at: pointer[...])
            case "remove":
                document = try document.removing(at: pointer[...])
            case "replace":
                guard let value = fields["value"] else { throw JSONPatchError("operation \(i) (replace) has no \"value\"") }
                _ = try document.value(at: pointer[...])
                document = try document.removing(at: pointer[...]).adding(value, at: pointer[...])
            case "move", "copy":
                guard let from = fields["from"]?.stringValue else { throw JSONPatchError("operation \(i) (\(name)) has no \"from\"") }
                let fromPointer = try JSON.pointerTokens(from)
                let value = try document.value(at: fromPointer[...])
                if name == "move" {
                    if pointer.count > fromPointer.count, Array(pointer.prefix(fromPointer.count)) == fromPointer {
                        throw JSONPatchError("operation \(i) moves a value into itself")
                    }
                    document = try document.removing(at: fromPointer[...])
                }
                document = try document.adding(value, at: pointer[...])
            case "test":
                guard let value = fields["value"] else { throw JSONPatchError("operation \(i) (test) has no \"value\"") }
                guard try document.value(at: pointer[...]) == value else { throw JSONPatchError("test failed at \(path)") }
            default:
                throw JSONPatchError("operation \(i) has an unknown op \"\(name)\"")
            }
        }
        return document
    }

    /// Applies an RFC 7396 JSON Merge Patch: `null` removes a member, objects merge recursively.
    public func merging(patch: JSON) -> JSON {
        guard case .object(let patchMembers) = patch else { return patch }
        var members = self.objectValue ?? [:]
        for (key, value) in patchMembers {
            if value == .null {
                members[key] = nil
            } else {
                members[key] = (members[key] ?? .null).merging(patch: value)
            }
        }
        return .object(members)
    }

    /// Splits an RFC 6901 JSON Pointer into its unescaped reference tokens.
    public static func pointerTokens(_ pointer: String) throws -> [String] {
        if pointer.isEmpty { return [] }
        guard pointer.hasPrefix("/") else { throw JSONPatchError("invalid JSON pointer \"\(pointer)\"") }
        return pointer.dropFirst().split(separator: "/", omittingEmptySubsequences: false).map {
            $0.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
        }
    }

    func value(at pointer: ArraySlice<String>) throws -> JSON {
        guard let token = pointer.first else { return self }
        switch self {
        case .object(let members):
            guard let child = members[token] else { throw JSONPatchError("no member \"\(token)\"") }
            return try child.value(at: pointer.dropFirst())
        case .array(let elements):
            guard let i = Int(token), i >= 0, i < elements.count else { throw JSONPatchError("no element \"\(token)\"") }
            return try elements[i].value(at: pointer.dropFirst())
        default:
            throw JSONPatchError("cannot step into a \(typeName) with \"\(token)\"")
        }
    }

    func adding(_ value: JSON, at pointer: ArraySlice<String>) throws -> JSON {
        guard let token = pointer.first else { return value }
        let rest = pointer.dropFirst()
        switch self {
        case .object(var members):
            if rest.isEmpty {
                members[token] = value
            } else {
                guard let child = members[token] else { throw JSONPatchError("no member \"\(token)\"") }
                members[token] = try child.adding(value, at: rest)
            }
            return .object(members)
        case .array(var elements):
            if rest.isEmpty {
                if token == "-" {
                    elements.append(value)
                } else {
                    guard let i = Int(token), i >= 0, i <= elements.count else { throw JSONPatchError("index \"\(token)\" out of range") }
                    elements.insert(value, at: i)
                }
            } else {
                guard let i = Int(token), i >= 0, i < elements.count else { throw JSONPatchError("no element \"\(token)\"") }
                elements[i] = try elements[i].adding(value, at: rest)
            }
            return .array(elements)
        default:
            throw JSONPatchError("cannot add into a \(typeName)")
        }
    }

    func removing(at pointer: ArraySlice<String>) throws -> JSON {
        guard let token = pointer.first else { throw JSONPatchError("cannot remove the whole document") }
        let rest = pointer.dropFirst()
        switch self {
        case .object(var members):
            guard let child = members[token] else { throw JSONPatchError("no member \"\(token)\"") }
            members[token] = rest.isEmpty ? nil : try child.removing(at: rest)
            return .object(members)
        case .array(var elements):
            guard let i = Int(token), i >= 0, i < elements.count else { throw JSONPatchError("no element \"\(token)\"") }
            if rest.isEmpty {
                elements.remove(at: i)
            } else {
                elements[i] = try elements[i].removing(at: rest)
            }
            return .array(elements)
        default:
            throw JSONPatchError("cannot remove from a \(typeName)")
        }
    }
}
