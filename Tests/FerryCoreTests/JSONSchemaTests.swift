import FerryCore
import Foundation
import Testing

/// One schema, one instance, and the violations expected ("path: message", root as "(root)").
struct SchemaCase: Sendable, CustomTestStringConvertible {
    let schema: String
    let instance: String
    let expected: [String]

    init(_ schema: String, _ instance: String, _ expected: [String] = []) {
        self.schema = schema
        self.instance = instance
        self.expected = expected
    }

    var testDescription: String { "\(schema) ⟵ \(instance)" }

    func run() throws {
        let schema = try JSONSchema(JSON.parse(schema))
        let violations = schema.validate(try JSON.parse(instance), limit: 100)
        #expect(violations.map(\.description) == expected, "schema \(self.schema), instance \(instance)")
    }
}

/// A schema that must not compile, and the message it must give.
struct InvalidSchemaCase: Sendable, CustomTestStringConvertible {
    let schema: String
    let message: String

    init(_ schema: String, _ message: String) {
        self.schema = schema
        self.message = message
    }

    var testDescription: String { schema }
}

@Suite struct JSONSchemaTests {
    // MARK: The user schema from Ferry's docs

    static let userSchema = #"""
        {"type":"object","properties":{"username":{"type":"string","minLength":1,"maxLength":64,"pattern":"^[a-z0-9_]+$"},
        "age":{"type":"integer","minimum":0,"maximum":150},
        "address":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]},
        "tags":{"type":"array","items":{"type":"string"},"uniqueItems":true}},
        "required":["username"],"additionalProperties":false}
        """#

    func user(_ record: String, limit: Int = 10) throws -> [JSONSchemaViolation] {
        try JSONSchema(JSON.parse(Self.userSchema)).validate(JSON.parse(record), limit: limit)
    }

    @Test func userSchemaAcceptsAValidRecord() throws {
        #expect(try user(#"{"username":"ada_1815","age":36,"address":{"city":"London"},"tags":["math","poetry"]}"#) == [])
        #expect(try user(#"{"username":"a"}"#) == [])
        #expect(try user(#"{"username":"a","age":36.0}"#) == [], "a double with no fraction is an integer")
    }

    @Test func userSchemaReportsEveryViolationInDocumentOrder() throws {
        let record = #"{"username":"Ada!","age":200,"address":{},"tags":["a","a",3],"extra":1}"#
        #expect(try user(record) == [
            JSONSchemaViolation(path: "/address/city", message: "is required"),
            JSONSchemaViolation(path: "/age", message: "must be at most 150"),
            JSONSchemaViolation(path: "/extra", message: "is not allowed"),
            JSONSchemaViolation(path: "/tags", message: "must not contain duplicates (items 0 and 1 are equal)"),
            JSONSchemaViolation(path: "/tags/2", message: "must be a string, not a number"),
            JSONSchemaViolation(path: "/username", message: "must match the pattern ^[a-z0-9_]+$"),
        ])
        #expect(try user(record, limit: 2).map(\.path) == ["/address/city", "/age"])
        #expect(try user(record, limit: 0).map(\.path) == ["/address/city"], "a limit below 1 still reports a violation")
    }

    @Test func userSchemaMessages() throws {
        #expect(try user(#"{}"#).map(\.description) == ["/username: is required"])
        #expect(try user(#"{"username":"ada","age":"36"}"#).map(\.description) == ["/age: must be an integer, not a string"])
        #expect(try user(#"{"username":"ada","age":36.5}"#).map(\.description) == ["/age: must be an integer, not 36.5"])
        #expect(try user(#"{"username":"ada","age":-1}"#).map(\.description) == ["/age: must be at least 0"])
        #expect(try user(#"{"username":""}"#).map(\.description) == [
            "/username: must be at least 1 character long",
            "/username: must match the pattern ^[a-z0-9_]+$",
        ])
        let long = String(repeating: "a", count: 65)
        #expect(try user(#"{"username":"\#(long)"}"#).map(\.description) == ["/username: must be at most 64 characters long"])
        // ICU's `$` also matches before a final line break; JSON Schema's (ECMAScript's) does not.
        #expect(try user(#"{"username":"ada\n"}"#).map(\.description) == ["/username: must match the pattern ^[a-z0-9_]+$"])
        #expect(try user(#"{"username":"ada","address":{"city":7}}"#).map(\.description) == ["/address/city: must be a string, not a number"])
        #expect(try user(#"[]"#).map(\.description) == ["(root): must be an object, not an array"])
    }

    // MARK: Keywords

    static let typeAndValueCases: [SchemaCase] = [
        SchemaCase(#"{"type":"string"}"#, #""a""#),
        SchemaCase(#"{"type":"string"}"#, "1", ["(root): must be a string, not a number"]),
        SchemaCase(#"{"type":"integer"}"#, "1"),
        SchemaCase(#"{"type":"integer"}"#, "1.0"),
        SchemaCase(#"{"type":"integer"}"#, "1e3"),
        SchemaCase(#"{"type":"integer"}"#, "1.5", ["(root): must be an integer, not 1.5"]),
        SchemaCase(#"{"type":"integer"}"#, #""1""#, ["(root): must be an integer, not a string"]),
        SchemaCase(#"{"type":"number"}"#, "1"),
        SchemaCase(#"{"type":"number"}"#, "1.5"),
        SchemaCase(#"{"type":"number"}"#, "null", ["(root): must be a number, not null"]),
        SchemaCase(#"{"type":"boolean"}"#, "0", ["(root): must be a boolean, not a number"]),
        SchemaCase(#"{"type":"null"}"#, "false", ["(root): must be null, not a boolean"]),
        SchemaCase(#"{"type":"object"}"#, "[]", ["(root): must be an object, not an array"]),
        SchemaCase(#"{"type":"array"}"#, "{}", ["(root): must be an array, not an object"]),
        SchemaCase(#"{"type":["string","null"]}"#, "null"),
        SchemaCase(#"{"type":["string","null"]}"#, "1", ["(root): must be a string or null, not a number"]),
        SchemaCase(#"{"type":["string","number","null"]}"#, "true", ["(root): must be a string, a number or null, not a boolean"]),
        SchemaCase(#"{"type":["integer","string"]}"#, "2.5", ["(root): must be an integer or a string, not 2.5"]),

        SchemaCase(#"{"enum":["red","green",1]}"#, #""green""#),
        SchemaCase(#"{"enum":["red","green",1]}"#, "1.0"),
        SchemaCase(#"{"enum":["red","green"]}"#, #""blue""#, [#"(root): must be one of "red", "green""#]),
        SchemaCase(#"{"enum":[null]}"#, "null"),
        SchemaCase(#"{"enum":[{"a":[1,2]}]}"#, #"{"a":[1.0,2]}"#),
        SchemaCase(#"{"enum":[{"a":[1,2]}]}"#, #"{"a":[2,1]}"#, [#"(root): must be one of {"a":[1,2]}"#]),
        SchemaCase(#"{"enum":[1,2,3,4,5,6,7,8,9,10,11]}"#, "12", ["(root): must be one of 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, …"]),
        SchemaCase(#"{"enum":[]}"#, "1", ["(root): is not allowed (the enum is empty)"]),

        SchemaCase(#"{"const":null}"#, "null"),
        SchemaCase(#"{"const":null}"#, "0", ["(root): must be null"]),
        SchemaCase(#"{"const":false}"#, "0", ["(root): must be false"]),
        SchemaCase(#"{"const":{"a":1,"b":[true]}}"#, #"{"b":[true],"a":1.0}"#),
        SchemaCase(#"{"const":[1,2]}"#, "[1,2,3]", ["(root): must be [1,2]"]),
        SchemaCase(#"{"const":9007199254740993}"#, "9007199254740992.0", ["(root): must be 9007199254740993"]),

        SchemaCase(#"{"format":"email"}"#, #""not an email""#),
        SchemaCase(
            #"""
            {"$schema":"https://json-schema.org/draft/2020-12/schema","$id":"https://example.com/u","$comment":"c","title":"t",
            "description":"d","default":1,"examples":[1],"readOnly":true,"writeOnly":false,"deprecated":true,"x-custom":{"type":"string"}}
            """#, "5"),
        SchemaCase("true", #"{"anything":[1]}"#),
        SchemaCase("false", "1", ["(root): is not allowed"]),
        SchemaCase("{}", "null"),
    ]

    @Test(arguments: typeAndValueCases) func typeEnumConstAndAnnotations(_ test: SchemaCase) throws { try test.run() }

    static let numberCases: [SchemaCase] = [
        SchemaCase(#"{"multipleOf":5}"#, "10"),
        SchemaCase(#"{"multipleOf":5}"#, "7", ["(root): must be a multiple of 5"]),
        SchemaCase(#"{"multipleOf":5}"#, "10.0"),
        SchemaCase(#"{"multipleOf":2.5}"#, "10"),
        SchemaCase(#"{"multipleOf":0.01}"#, "19.99"),
        SchemaCase(#"{"multipleOf":0.01}"#, "19.999", ["(root): must be a multiple of 0.01"]),
        SchemaCase(#"{"multipleOf":0.123456789}"#, "1e308", ["(root): must be a multiple of 0.123456789"]),
        SchemaCase(#"{"multipleOf":2}"#, #""x""#),

        SchemaCase(#"{"minimum":0}"#, "0"),
        SchemaCase(#"{"minimum":0}"#, "-0.5", ["(root): must be at least 0"]),
        SchemaCase(#"{"minimum":0}"#, #""-1""#),
        SchemaCase(#"{"exclusiveMinimum":0}"#, "0", ["(root): must be greater than 0"]),
        SchemaCase(#"{"exclusiveMinimum":0}"#, "0.001"),
        SchemaCase(#"{"maximum":150}"#, "150"),
        SchemaCase(#"{"maximum":150}"#, "150.5", ["(root): must be at most 150"]),
        SchemaCase(#"{"exclusiveMaximum":10}"#, "10", ["(root): must be less than 10"]),
        SchemaCase(#"{"exclusiveMaximum":10.5}"#, "10"),
        SchemaCase(#"{"minimum":1,"exclusiveMinimum":0}"#, "0", ["(root): must be greater than 0", "(root): must be at least 1"]),
        // Draft-04's boolean form.
        SchemaCase(#"{"minimum":5,"exclusiveMinimum":true}"#, "5", ["(root): must be greater than 5"]),
        SchemaCase(#"{"minimum":5,"exclusiveMinimum":false}"#, "5"),
        SchemaCase(#"{"maximum":5,"exclusiveMaximum":true}"#, "5", ["(root): must be less than 5"]),
        SchemaCase(#"{"maximum":5,"exclusiveMaximum":true}"#, "4.9"),
        // Compared exactly: as doubles, 2^53 + 1 and 2^53 are the same number.
        SchemaCase(#"{"maximum":9007199254740992.0}"#, "9007199254740993", ["(root): must be at most 9007199254740992"]),
        SchemaCase(#"{"minimum":-1.5}"#, "-1"),
    ]

    @Test(arguments: numberCases) func numbers(_ test: SchemaCase) throws { try test.run() }

    static let stringCases: [SchemaCase] = [
        SchemaCase(#"{"minLength":2}"#, #""ab""#),
        SchemaCase(#"{"minLength":2}"#, #""é""#, ["(root): must be at least 2 characters long"]),
        SchemaCase(#"{"minLength":2}"#, #""😀😀""#),
        SchemaCase(#"{"maxLength":1}"#, #""😀""#),
        SchemaCase(#"{"maxLength":1}"#, #""ab""#, ["(root): must be at most 1 character long"]),
        // Code points, not characters: e + combining acute accent + e is three.
        SchemaCase(#"{"maxLength":2}"#, #""e\u0301e""#, ["(root): must be at most 2 characters long"]),
        SchemaCase(#"{"minLength":5}"#, "5"),

        SchemaCase(#"{"pattern":"b+"}"#, #""abbc""#),
        SchemaCase(#"{"pattern":"^b+$"}"#, #""abbc""#, ["(root): must match the pattern ^b+$"]),
        SchemaCase(#"{"pattern":"^a$"}"#, #""a\n""#, ["(root): must match the pattern ^a$"]),
        SchemaCase(#"{"pattern":"^\\d+$"}"#, #""123""#),
        SchemaCase(#"{"pattern":"^\\d+$"}"#, #""١٢٣""#, [#"(root): must match the pattern ^\d+$"#]),
        SchemaCase(#"{"pattern":"^[\\w-]+$"}"#, #""a_b-c""#),
        SchemaCase(#"{"pattern":"^[a&b]+$"}"#, #""a&b""#),
        SchemaCase(#"{"pattern":"^[[]$"}"#, #""[""#),
        SchemaCase(#"{"pattern":"^[^]$"}"#, #""x""#),
        SchemaCase(#"{"pattern":"[]"}"#, #""x""#, ["(root): must match the pattern []"]),
        SchemaCase(#"{"pattern":"^[$]$"}"#, #""$""#),
        SchemaCase(#"{"pattern":"^\\$$"}"#, #""$""#),
        SchemaCase(#"{"pattern":"^\\p{L}+$"}"#, #""été""#),
        SchemaCase(#"{"pattern":"x"}"#, "5"),
    ]

    @Test(arguments: stringCases) func strings(_ test: SchemaCase) throws { try test.run() }

    static let arrayCases: [SchemaCase] = [
        SchemaCase(#"{"items":{"type":"integer"}}"#, "[1,2]"),
        SchemaCase(#"{"items":{"type":"integer"}}"#, #"[1,2,"x"]"#, ["/2: must be an integer, not a string"]),
        SchemaCase(#"{"items":{"type":"integer"}}"#, #"{"0":"x"}"#),
        SchemaCase(#"{"items":false}"#, "[]"),
        SchemaCase(#"{"items":false}"#, "[1]", ["/0: is not allowed"]),
        SchemaCase(#"{"prefixItems":[{"type":"string"},{"type":"integer"}],"items":false}"#, #"["a",1]"#),
        SchemaCase(#"{"prefixItems":[{"type":"string"},{"type":"integer"}],"items":false}"#, #"["a"]"#),
        SchemaCase(#"{"prefixItems":[{"type":"string"},{"type":"integer"}],"items":false}"#, #"["a",1,true]"#, ["/2: is not allowed"]),
        SchemaCase(#"{"prefixItems":[{"type":"string"},{"type":"integer"}]}"#, #"[1,"a",true]"#, [
            "/0: must be a string, not a number", "/1: must be an integer, not a string",
        ]),
        // Draft-07's tuple form.
        SchemaCase(#"{"items":[{"type":"string"}],"additionalItems":{"type":"integer"}}"#, #"["a",1,"b"]"#, ["/2: must be an integer, not a string"]),
        SchemaCase(#"{"items":[{"type":"string"}],"additionalItems":false}"#, #"["a",1]"#, ["/1: is not allowed"]),
        SchemaCase(#"{"additionalItems":false}"#, "[1,2]"),

        SchemaCase(#"{"minItems":2}"#, "[1,2]"),
        SchemaCase(#"{"minItems":2}"#, "[1]", ["(root): must have at least 2 items"]),
        SchemaCase(#"{"maxItems":1}"#, "[1,2]", ["(root): must have at most 1 item"]),
        SchemaCase(#"{"maxItems":1}"#, #""12""#),

        SchemaCase(#"{"uniqueItems":true}"#, #"[1,"1",true,null,[1],{"a":1}]"#),
        SchemaCase(#"{"uniqueItems":true}"#, #"[1,"1",1.0]"#, ["(root): must not contain duplicates (items 0 and 2 are equal)"]),
        SchemaCase(#"{"uniqueItems":true}"#, #"[{"a":1,"b":2},{"b":2.0,"a":1}]"#, ["(root): must not contain duplicates (items 0 and 1 are equal)"]),
        SchemaCase(#"{"uniqueItems":true}"#, "[[1,2],[2,1]]"),
        SchemaCase(#"{"uniqueItems":true}"#, "[0,false]"),
        SchemaCase(#"{"uniqueItems":false}"#, "[1,1]"),

        SchemaCase(#"{"contains":{"type":"string"}}"#, #"[1,"a"]"#),
        SchemaCase(#"{"contains":{"type":"string"}}"#, "[1,2]", [#"(root): must contain an item matching the "contains" schema"#]),
        SchemaCase(#"{"contains":{"type":"string"}}"#, "[]", [#"(root): must contain an item matching the "contains" schema"#]),
        SchemaCase(#"{"contains":{"type":"string"},"minContains":2}"#, #"["a",1]"#, [
            #"(root): must contain at least 2 items matching the "contains" schema (it has 1)"#,
        ]),
        SchemaCase(#"{"contains":{"type":"string"},"maxContains":1}"#, #"["a",1]"#),
        SchemaCase(#"{"contains":{"type":"string"},"maxContains":1}"#, #"["a","b"]"#, [
            #"(root): must contain at most 1 item matching the "contains" schema"#,
        ]),
        SchemaCase(#"{"contains":{"type":"string"},"minContains":0}"#, "[]"),
        SchemaCase(#"{"minContains":3}"#, "[]"),
    ]

    @Test(arguments: arrayCases) func arrays(_ test: SchemaCase) throws { try test.run() }

    static let objectCases: [SchemaCase] = [
        SchemaCase(#"{"required":["a","b"]}"#, #"{"a":1,"b":null}"#),
        SchemaCase(#"{"required":["a","b"]}"#, #"{"a":1}"#, ["/b: is required"]),
        SchemaCase(#"{"required":["b","a"]}"#, #"{}"#, ["/a: is required", "/b: is required"]),
        SchemaCase(#"{"required":["a"]}"#, "[]"),
        SchemaCase(#"{"required":[]}"#, "{}"),

        SchemaCase(#"{"properties":{"a":{"type":"string"}}}"#, #"{"a":1,"b":2}"#, ["/a: must be a string, not a number"]),
        SchemaCase(#"{"properties":{"a/b":{"type":"string"},"c~d":{"type":"string"}}}"#, #"{"a/b":1,"c~d":2}"#, [
            "/a~1b: must be a string, not a number", "/c~0d: must be a string, not a number",
        ]),
        SchemaCase(#"{"patternProperties":{"^x-":{"type":"string"}},"additionalProperties":false}"#, #"{"x-a":"ok","x-b":1,"y":1}"#, [
            "/x-b: must be a string, not a number", "/y: is not allowed",
        ]),
        SchemaCase(#"{"properties":{"x-a":{"maxLength":1}},"patternProperties":{"^x-":{"type":"string"}}}"#, #"{"x-a":"ok"}"#, [
            "/x-a: must be at most 1 character long",
        ]),
        SchemaCase(#"{"properties":{"a":{}},"additionalProperties":{"type":"integer"}}"#, #"{"a":"s","b":1,"c":"x"}"#, [
            "/c: must be an integer, not a string",
        ]),
        SchemaCase(#"{"additionalProperties":false}"#, "{}"),

        SchemaCase(#"{"propertyNames":{"maxLength":3}}"#, #"{"abc":1}"#),
        SchemaCase(#"{"propertyNames":{"maxLength":3}}"#, #"{"abc":1,"abcd":2}"#, ["/abcd: property name must be at most 3 characters long"]),
        SchemaCase(#"{"propertyNames":{"pattern":"^[a-z]+$"}}"#, #"{"Bad":1}"#, ["/Bad: property name must match the pattern ^[a-z]+$"]),
        SchemaCase(#"{"propertyNames":false}"#, #"{"a":1}"#, ["/a: property name is not allowed"]),
        SchemaCase(#"{"propertyNames":false}"#, "{}"),

        SchemaCase(#"{"minProperties":1}"#, "{}", ["(root): must have at least 1 property"]),
        SchemaCase(#"{"maxProperties":1}"#, #"{"a":1,"b":2}"#, ["(root): must have at most 1 property"]),
        SchemaCase(#"{"maxProperties":2}"#, #"{"a":1,"b":2}"#),

        SchemaCase(#"{"dependentRequired":{"card":["billing"]}}"#, #"{"card":1}"#, [#"/billing: is required when "card" is present"#]),
        SchemaCase(#"{"dependentRequired":{"card":["billing"]}}"#, #"{"billing":1}"#),
        SchemaCase(#"{"dependentSchemas":{"card":{"required":["billing"]}}}"#, #"{"card":1}"#, ["/billing: is required"]),
        SchemaCase(#"{"dependentSchemas":{"card":{"required":["billing"]}}}"#, #"{}"#),
        SchemaCase(#"{"dependencies":{"a":["b"],"c":{"required":["d"]}}}"#, #"{"a":1,"c":1}"#, [
            #"/b: is required when "a" is present"#, "/d: is required",
        ]),
    ]

    @Test(arguments: objectCases) func objects(_ test: SchemaCase) throws { try test.run() }

    static let combinationCases: [SchemaCase] = [
        SchemaCase(#"{"allOf":[{"type":"integer"},{"minimum":3}]}"#, "3"),
        SchemaCase(#"{"allOf":[{"type":"integer"},{"minimum":3}]}"#, "2", ["(root): must be at least 3"]),
        SchemaCase(#"{"allOf":[{"type":"string"},{"type":"string"}]}"#, "1", ["(root): must be a string, not a number"]),
        SchemaCase(#"{"anyOf":[{"type":"string"},{"type":"null"}]}"#, "null"),
        SchemaCase(#"{"anyOf":[{"type":"string"},{"type":"null"}]}"#, "1", [#"(root): must match at least one of the schemas in "anyOf""#]),
        SchemaCase(#"{"oneOf":[{"type":"integer"},{"minimum":2}]}"#, "1"),
        SchemaCase(#"{"oneOf":[{"type":"integer"},{"minimum":2}]}"#, "2.5"),
        SchemaCase(#"{"oneOf":[{"type":"integer"},{"minimum":2}]}"#, "3", [
            #"(root): must match exactly one of the schemas in "oneOf" (it matches schemas 0 and 1)"#,
        ]),
        SchemaCase(#"{"oneOf":[{"type":"integer"},{"minimum":2}]}"#, "1.5", [
            #"(root): must match exactly one of the schemas in "oneOf" (it matches none)"#,
        ]),
        SchemaCase(#"{"not":{"type":"string"}}"#, "1"),
        SchemaCase(#"{"not":{"type":"string"}}"#, #""a""#, [#"(root): must not match the schema in "not""#]),
        SchemaCase(#"{"properties":{"a":{"not":{}}}}"#, #"{"a":1}"#, [#"/a: must not match the schema in "not""#]),

        SchemaCase(#"{"if":{"properties":{"country":{"const":"US"}}},"then":{"required":["zip"]},"else":{"required":["postcode"]}}"#,
            #"{"country":"US"}"#, ["/zip: is required"]),
        SchemaCase(#"{"if":{"properties":{"country":{"const":"US"}}},"then":{"required":["zip"]},"else":{"required":["postcode"]}}"#,
            #"{"country":"FR"}"#, ["/postcode: is required"]),
        SchemaCase(#"{"if":{"properties":{"country":{"const":"US"}}},"then":{"required":["zip"]},"else":{"required":["postcode"]}}"#,
            #"{"country":"US","zip":"10001"}"#),
        SchemaCase(#"{"if":{"type":"string"},"then":{"minLength":2}}"#, "1"),
        SchemaCase(#"{"then":{"type":"string"},"else":{"type":"string"}}"#, "1"),
    ]

    @Test(arguments: combinationCases) func combinations(_ test: SchemaCase) throws { try test.run() }

    static let referenceCases: [SchemaCase] = [
        SchemaCase(##"{"$defs":{"pos":{"type":"integer","minimum":1}},"properties":{"n":{"$ref":"#/$defs/pos"}}}"##, ##"{"n":0}"##, ["/n: must be at least 1"]),
        SchemaCase(##"{"definitions":{"pos":{"type":"integer","minimum":1}},"items":{"$ref":"#/definitions/pos"}}"##, ##"[1,"2"]"##, [
            "/1: must be an integer, not a string",
        ]),
        SchemaCase(##"{"properties":{"a":{"type":"string"},"b":{"$ref":"#/properties/a"}}}"##, ##"{"b":1}"##, ["/b: must be a string, not a number"]),
        SchemaCase(##"{"not":{"type":"string"},"items":{"$ref":"#/not"}}"##, "[1]", ["/0: must be a string, not a number"]),
        SchemaCase(##"{"x-not-a-keyword":{"type":"string"},"items":{"$ref":"#/x-not-a-keyword"}}"##, "[1]", ["/0: must be a string, not a number"]),
        SchemaCase(##"{"$defs":{"a/b":{"type":"string"},"c d":{"type":"integer"}},"properties":{"x":{"$ref":"#/$defs/a~1b"},"y":{"$ref":"#/$defs/c%20d"}}}"##,
            #"{"x":1,"y":"s"}"#, ["/x: must be a string, not a number", "/y: must be an integer, not a string"]),
        SchemaCase(##"{"$defs":{"s":{"$anchor":"str","type":"string"}},"items":{"$ref":"#str"}}"##, "[1]", ["/0: must be a string, not a number"]),
        SchemaCase(#"{"$id":"https://example.com/s.json","$defs":{"s":{"type":"string"}},"items":{"$ref":"https://example.com/s.json#/$defs/s"}}"#,
            "[1]", ["/0: must be a string, not a number"]),
        // Draft 2020-12: keywords beside $ref apply too.
        SchemaCase(##"{"$defs":{"s":{"type":"string"}},"$ref":"#/$defs/s","maxLength":2}"##, ##""abc""##, ["(root): must be at most 2 characters long"]),
        SchemaCase(##"{"$defs":{"s":{"type":"string"}},"$ref":"#/$defs/s","maxLength":2}"##, "3", ["(root): must be a string, not a number"]),
        // Mutual recursion that steps into the value each time.
        SchemaCase(##"{"$defs":{"a":{"items":{"$ref":"#/$defs/b"}},"b":{"type":"array","items":{"$ref":"#/$defs/a"}}},"$ref":"#/$defs/a"}"##,
            "[[[[]]],[[1]]]", ["/1/0/0: must be an array, not a number"]),
    ]

    @Test(arguments: referenceCases) func references(_ test: SchemaCase) throws { try test.run() }

    @Test func violationDescriptionAndOrder() throws {
        #expect(JSONSchemaViolation(path: "/age", message: "must be at most 150").description == "/age: must be at most 150")
        #expect(JSONSchemaViolation(path: "", message: "is not allowed").description == "(root): is not allowed")
        // Array elements by index (2 before 10), members by key, a node before what is inside it.
        let schema = try JSONSchema(JSON.parse(#"""
            {"properties":{"b":{"type":"string"},"a":{"minProperties":2,"properties":{"z":{"type":"string"}}},
            "list":{"items":{"type":"string"}}},"required":["c"]}
            """#))
        let violations = schema.validate(try JSON.parse(#"{"b":1,"a":{"z":1},"list":["x","y",0,"x","x","x","x","x","x","x",0]}"#))
        #expect(violations.map(\.path) == ["/a", "/a/z", "/b", "/c", "/list/2", "/list/10"])
    }

    // MARK: Recursion and hostile input

    static let treeSchema = #"""
        {"type":"object","properties":{"value":{"type":"number"},"children":{"type":"array","items":{"$ref":"#"}}},
        "required":["value"],"additionalProperties":false}
        """#

    @Test func recursiveReferenceValidatesATree() throws {
        let schema = try JSONSchema(JSON.parse(Self.treeSchema))
        let good = #"{"value":1,"children":[{"value":2},{"value":3,"children":[{"value":4,"children":[]}]}]}"#
        #expect(schema.validate(try JSON.parse(good)) == [])
        let bad = #"{"value":1,"children":[{"value":2,"children":[{"value":3},{"value":"4"}]},{"children":[],"colour":"red"}]}"#
        #expect(schema.validate(try JSON.parse(bad)).map(\.description) == [
            "/children/0/children/1/value: must be a number, not a string",
            "/children/1/colour: is not allowed",
            "/children/1/value: is required",
        ])
        // A tree 60 levels deep is fine (each level is three subschemas deep: root, children, items).
        var tree: JSON = ["value": 0]
        for level in 1...60 { tree = ["value": .int(Int64(level)), "children": [tree]] }
        #expect(schema.validate(tree) == [])
    }

    @Test func recursionDeeperThanTheLimitIsAViolation() throws {
        let schema = try JSONSchema(JSON.parse(##"{"type":"array","items":{"$ref":"#"}}"##))
        var value: JSON = []
        for _ in 0..<100 { value = [value] }
        #expect(schema.validate(value) == [])
        for _ in 0..<200 { value = [value] }
        let violations = schema.validate(value)
        #expect(violations.count == 1)
        #expect(violations.first?.message == "the schema recurses too deeply (more than 256 levels)")
        #expect(violations.first?.path.hasPrefix("/0/0/0/") == true)
        release(consume value)
    }

    @Test func selfReferenceIsRefusedAtCompileTime() throws {
        let never = "leads back to the same schema without stepping into a property or an item, so validation would never end"
        #expect(compileError(["$ref": "#"]) == ##""$ref" "#" \##(never) (at /$ref in the schema)"##)
        #expect(compileError(try JSON.parse(##"{"anyOf":[{"type":"string"},{"$ref":"#"}]}"##))
            == ##""$ref" "#" \##(never) (at /anyOf/1/$ref in the schema)"##)
        #expect(compileError(try JSON.parse(##"{"$defs":{"a":{"$ref":"#/$defs/b"},"b":{"allOf":[{"$ref":"#/$defs/a"}]}}}"##))
            == ##""$ref" "#/$defs/b" \##(never) (at /$defs/a/$ref in the schema)"##)
        #expect(compileError(try JSON.parse(##"{"$defs":{"a":{"not":{"$ref":"#/$defs/a"}}}}"##))
            == ##""$ref" "#/$defs/a" \##(never) (at /$defs/a/not/$ref in the schema)"##)
        #expect(compileError(try JSON.parse(##"{"if":{"$ref":"#"},"then":{}}"##)) == ##""$ref" "#" \##(never) (at /if/$ref in the schema)"##)
        // Stepping into the value each time is fine: it ends with the value.
        #expect(compileError(try JSON.parse(##"{"properties":{"next":{"$ref":"#"}},"propertyNames":{"$ref":"#"}}"##)) == nil)
    }

    @Test func tenThousandDeepInstanceDoesNotCrash() throws {
        var deep: JSON = 1
        for _ in 0..<10_000 { deep = [deep] }
        var deepObject: JSON = 1
        for _ in 0..<10_000 { deepObject = ["a": deepObject] }

        let user = try JSONSchema(JSON.parse(Self.userSchema))
        #expect(user.validate(deep).map(\.description) == ["(root): must be an object, not an array"])

        let recursive = try JSONSchema(JSON.parse(##"{"items":{"$ref":"#"},"properties":{"a":{"$ref":"#"}}}"##))
        #expect(recursive.validate(deep).map(\.message) == ["the schema recurses too deeply (more than 256 levels)"])
        #expect(recursive.validate(deepObject).map(\.message) == ["the schema recurses too deeply (more than 256 levels)"])

        // enum, const and uniqueItems compare and hash without recursion.
        #expect(try JSONSchema(["uniqueItems": true]).validate([deep, deepObject]) == [])
        #expect(try JSONSchema(["uniqueItems": true]).validate([deep, deep]).map(\.message) == ["must not contain duplicates (items 0 and 1 are equal)"])
        #expect(try JSONSchema(["const": deep]).validate(deep) == [])
        let constMessage = try JSONSchema(["const": deep]).validate(deepObject).first?.message ?? ""
        #expect(constMessage == "must be [[[[[[[[[…]]]]]]]]]")
        #expect(try JSONSchema(["enum": [1, deep]]).validate(deep) == [])
        #expect(try JSONSchema(["enum": [1, deep]]).validate(deepObject).count == 1)
        release(consume deep)
        release(consume deepObject)
    }

    /// The deepest evaluation and the deepest schema fit the 512 KB stack macOS gives a
    /// secondary thread, even in a debug build.
    @Test func deepestEvaluationFitsA512KBThreadStack() async throws {
        let recursive = try JSONSchema(JSON.parse(##"{"properties":{"a":{"$ref":"#"}},"items":{"$ref":"#"},"contains":{"$ref":"#"}}"##))
        var nested: JSON = 1
        for level in 0..<300 { nested = level.isMultiple(of: 2) ? [nested] : ["a": nested] }
        var deepSchema: JSON = ["type": "string"]
        for _ in 0..<64 { deepSchema = ["type": "object", "properties": ["a": deepSchema], "required": ["a"]] }
        let (instance, schema) = (nested, deepSchema)
        let results = await withCheckedContinuation { (continuation: CheckedContinuation<[String], Never>) in
            let thread = Thread {
                var results = recursive.validate(instance).map(\.message)
                results.append((try? JSONSchema(schema)) == nil ? "schema refused" : "schema compiled")
                continuation.resume(returning: results)
            }
            thread.stackSize = 512 * 1024
            thread.start()
        }
        #expect(results == ["the schema recurses too deeply (more than 256 levels)", "schema compiled"])
    }

    @Test func exponentialWorkStopsAtTheBudget() throws {
        // Each level tries both branches of anyOf, and both fail: 2^40 evaluations if unbounded.
        var definitions: [String: JSON] = ["a40": false]
        for i in 0..<40 {
            let next: JSON = ["$ref": .string("#/$defs/a\(i + 1)")]
            definitions["a\(i)"] = ["anyOf": [next, next]]
        }
        let branching = try JSONSchema(["$defs": .object(definitions), "$ref": "#/$defs/a0"])
        #expect(branching.validate(1).map(\.description) == ["(root): is too costly to validate against this schema (more than 1000000 steps)"])

        // The same blow-up driven by the instance's depth instead.
        let doubling = try JSONSchema(JSON.parse(##"{"allOf":[{"items":{"$ref":"#"}},{"items":{"$ref":"#"}}]}"##))
        var value: JSON = []
        for _ in 0..<40 { value = [value] }
        #expect(doubling.validate(value).map(\.message) == ["is too costly to validate against this schema (more than 1000000 steps)"])
    }

    @Test func schemaNestingIsLimitedTo64Levels() throws {
        var schema: JSON = ["type": "string"]
        for _ in 0..<64 { schema = ["not": schema] }
        #expect(try JSONSchema(schema).validate("a").count == 0)  // 64 nested "not": even, so strings pass
        schema = ["not": schema]
        let location = String(repeating: "/not", count: 65)
        #expect(compileError(schema) == "the schema nests subschemas more than 64 levels deep (at \(location) in the schema)")
    }

    /// ReDoS: `^(a+)+$` backtracks 2^40 times on forty a's and a b. The match is stopped past
    /// the validation's pattern budget and the value refused, never accepted (without the
    /// budget this test does not finish). A second pattern after the first gets no fresh budget.
    @Test(arguments: [#"{"pattern":"^(a+)+$"}"#, #"{"patternProperties":{"^(a|aa)+$":{}},"additionalProperties":false}"#])
    func aCatastrophicPatternIsStoppedAndRefused(schema: String) throws {
        let compiled = try JSONSchema(JSON.parse(schema))
        let evil = String(repeating: "a", count: 40) + "b"
        let instance: JSON = schema.contains("patternProperties") ? .object([evil: 1]) : .string(evil)
        let violations = compiled.validate(instance)
        #expect(violations.count == 1)
        #expect(violations.first?.message.contains("too costly to validate against this schema (its patterns took more than") == true,
                "\(violations)")
        // The same pattern on an ordinary value answers as before.
        #expect(compiled.validate(schema.contains("patternProperties") ? ["aaa": 1] : "aaa").isEmpty)
    }

    @Test func patternsAreLimitedTo1000Characters() throws {
        let ok = String(repeating: "a", count: 1_000)
        #expect(try JSONSchema(["pattern": .string(ok)]).validate(.string(ok)) == [])
        #expect(compileError(["pattern": .string(ok + "a")]) == #""pattern" has a pattern longer than 1000 characters (at /pattern in the schema)"#)
    }

    // MARK: Invalid schemas

    static let invalidSchemas: [InvalidSchemaCase] = [
        InvalidSchemaCase("5", "a schema must be an object or a boolean, not a number (at the root of the schema)"),
        InvalidSchemaCase(#"{"minimum":"3"}"#, #""minimum" must be a number, not a string (at /minimum in the schema)"#),
        InvalidSchemaCase(#"{"properties":{"age":{"minimum":"3"}}}"#, #""minimum" must be a number, not a string (at /properties/age/minimum in the schema)"#),
        InvalidSchemaCase(#"{"exclusiveMaximum":"3"}"#, #""exclusiveMaximum" must be a number, not a string (at /exclusiveMaximum in the schema)"#),
        InvalidSchemaCase(#"{"multipleOf":0}"#, #""multipleOf" must be greater than 0, not 0 (at /multipleOf in the schema)"#),
        InvalidSchemaCase(#"{"minLength":-1}"#, #""minLength" must be a non-negative integer, not -1 (at /minLength in the schema)"#),
        InvalidSchemaCase(#"{"maxItems":1.5}"#, #""maxItems" must be a non-negative integer, not 1.5 (at /maxItems in the schema)"#),
        InvalidSchemaCase(#"{"minProperties":"1"}"#, #""minProperties" must be a non-negative integer, not a string (at /minProperties in the schema)"#),
        InvalidSchemaCase(#"{"required":"x"}"#, #""required" must be an array of strings, not a string (at /required in the schema)"#),
        InvalidSchemaCase(#"{"required":["a",1]}"#, #""required" must be an array of strings, but item 1 is a number (at /required/1 in the schema)"#),
        InvalidSchemaCase(#"{"properties":[]}"#, #""properties" must be an object whose values are schemas, not an array (at /properties in the schema)"#),
        InvalidSchemaCase(#"{"properties":{"age":"integer"}}"#,
            #""properties" must be an object whose values are schemas (objects or booleans), but "age" is a string (at /properties/age in the schema)"#),
        InvalidSchemaCase(#"{"type":"text"}"#,
            #""type" names an unknown type "text"; the types are null, boolean, object, array, number, string, integer (at /type in the schema)"#),
        InvalidSchemaCase(#"{"type":["string",5]}"#, #""type" must be a type name or an array of them, not a number (at /type/1 in the schema)"#),
        InvalidSchemaCase(#"{"type":[]}"#, #""type" must be a type name or a non-empty array of them, not an empty array (at /type in the schema)"#),
        InvalidSchemaCase(#"{"type":["string","string"]}"#, #""type" names "string" twice (at /type/1 in the schema)"#),
        InvalidSchemaCase(#"{"enum":"a"}"#, #""enum" must be an array, not a string (at /enum in the schema)"#),
        InvalidSchemaCase(#"{"pattern":5}"#, #""pattern" must be a string, not a number (at /pattern in the schema)"#),
        InvalidSchemaCase(#"{"pattern":"("}"#, #""pattern" has an invalid regular expression: "(" (at /pattern in the schema)"#),
        InvalidSchemaCase(#"{"patternProperties":{"a(":{}}}"#, #""patternProperties" has an invalid regular expression: "a(" (at /patternProperties/a( in the schema)"#),
        InvalidSchemaCase(#"{"uniqueItems":"yes"}"#, #""uniqueItems" must be a boolean, not a string (at /uniqueItems in the schema)"#),
        InvalidSchemaCase(#"{"items":5}"#, #""items" must be a schema (an object or a boolean), not a number (at /items in the schema)"#),
        InvalidSchemaCase(#"{"prefixItems":[{}],"items":[{}]}"#, #""items" must be a schema when "prefixItems" is present, not an array (at /items in the schema)"#),
        InvalidSchemaCase(#"{"additionalProperties":"no"}"#,
            #""additionalProperties" must be a schema (an object or a boolean), not a string (at /additionalProperties in the schema)"#),
        InvalidSchemaCase(#"{"contains":{},"minContains":"1"}"#, #""minContains" must be a non-negative integer, not a string (at /minContains in the schema)"#),
        InvalidSchemaCase(#"{"allOf":[]}"#, #""allOf" must be a non-empty array of schemas, not an empty one (at /allOf in the schema)"#),
        InvalidSchemaCase(#"{"anyOf":{}}"#, #""anyOf" must be a non-empty array of schemas, not an object (at /anyOf in the schema)"#),
        InvalidSchemaCase(#"{"oneOf":[{},1]}"#, #""oneOf" must be an array of schemas (objects or booleans), but item 1 is a number (at /oneOf/1 in the schema)"#),
        InvalidSchemaCase(#"{"not":null}"#, #""not" must be a schema (an object or a boolean), not null (at /not in the schema)"#),
        InvalidSchemaCase(#"{"dependentRequired":{"a":"b"}}"#, #""dependentRequired" must be an array of strings, not a string (at /dependentRequired/a in the schema)"#),
        InvalidSchemaCase(#"{"dependencies":{"a":5}}"#,
            #""dependencies" must be an object whose values are arrays of strings or schemas, but "a" is a number (at /dependencies/a in the schema)"#),
        InvalidSchemaCase(#"{"$defs":{"broken":{"type":"nope"}}}"#,
            #""type" names an unknown type "nope"; the types are null, boolean, object, array, number, string, integer (at /$defs/broken/type in the schema)"#),
        InvalidSchemaCase(#"{"then":{"minimum":"1"}}"#, #""minimum" must be a number, not a string (at /then/minimum in the schema)"#),
        InvalidSchemaCase(#"{"$ref":5}"#, #""$ref" must be a string, not a number (at /$ref in the schema)"#),
        InvalidSchemaCase(#"{"$ref":"other.json#/a"}"#,
            ##""$ref" must be a local reference starting with "#"; "other.json#/a" is remote, and remote references are not supported (at /$ref in the schema)"##),
        InvalidSchemaCase(##"{"items":{"$ref":"#/$defs/missing"}}"##, ##""$ref" "#/$defs/missing" points to nothing in the schema (at /items/$ref in the schema)"##),
        InvalidSchemaCase(##"{"enum":[1],"$ref":"#/enum/0"}"##, ##""$ref" "#/enum/0" points to a number, not a schema (at /$ref in the schema)"##),
        InvalidSchemaCase(##"{"$ref":"#nowhere"}"##, ##""$ref" "#nowhere" names no $anchor in the schema (at /$ref in the schema)"##),
        InvalidSchemaCase(#"{"unevaluatedProperties":false}"#, #""unevaluatedProperties" is not supported (at /unevaluatedProperties in the schema)"#),
        InvalidSchemaCase(##"{"items":{"$dynamicRef":"#meta"}}"##, ##""$dynamicRef" is not supported (at /items/$dynamicRef in the schema)"##),
    ]

    @Test(arguments: invalidSchemas) func invalidSchemaIsRefused(_ test: InvalidSchemaCase) throws {
        let schema = try JSON.parse(test.schema)
        #expect(compileError(schema) == test.message)
        do {
            _ = try JSONSchema(schema)
        } catch {
            #expect(error.description == test.message)
        }
    }

    @Test func compiledSchemaIsSharedAcrossTasks() async throws {
        let schema = try JSONSchema(JSON.parse(Self.userSchema))
        let counts = await withTaskGroup(of: Int.self) { group in
            for i in 0..<8 {
                group.addTask { schema.validate(["username": .string(i.isMultiple(of: 2) ? "ok" : "Not OK")]).count }
            }
            return await group.reduce(0, +)
        }
        #expect(counts == 4)
    }

    /// The message of the error compiling `schema` gives, or `nil` when it compiles.
    func compileError(_ schema: JSON) -> String? {
        do {
            _ = try JSONSchema(schema)
            return nil
        } catch {
            #expect(error.message == error.description)
            return error.description
        }
    }

    /// Takes a deeply nested value apart one level at a time: letting it go all at once would
    /// free it recursively, one stack frame per level.
    func release(_ value: consuming JSON) {
        var current = value
        while true {
            switch current {
            case .array(let elements) where elements.count == 1: current = elements[0]
            case .object(let members) where members.count == 1: current = members.first!.value
            default: return
            }
        }
    }
}
