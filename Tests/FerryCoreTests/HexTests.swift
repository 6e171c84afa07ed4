import FerryCore
import Testing

@Suite struct HexTests {
    @Test func encodesLowercaseAndDecodesEitherCase() {
        #expect(Hex.encode([0x00, 0x0f, 0xa0, 0xff]) == "000fa0ff")
        #expect(Hex.encode([]) == "")
        #expect(Hex.decode("000fa0ff") == [0x00, 0x0f, 0xa0, 0xff])
        #expect(Hex.decode("A0Ff") == [0xa0, 0xff])
        #expect(Hex.decode("") == [])
        for bad in ["a", "abc", "0g", "-1", " 0a", "0x0a"] {
            #expect(Hex.decode(bad) == nil, "\(bad)")
        }
    }
}
