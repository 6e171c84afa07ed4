import FerryCore
import Testing

@Suite struct HTTPDateTests {
    /// RFC 7231 dates (the `Last-Modified` of every response), checked against Python's
    /// `email.utils.formatdate(…, usegmt=True)`; the milliseconds are dropped.
    @Test func writesRFC7231Dates() {
        #expect(Timestamp.httpDate(0) == "Thu, 01 Jan 1970 00:00:00 GMT")
        #expect(Timestamp.httpDate(1_796_405_083_248) == "Fri, 04 Dec 2026 17:24:43 GMT")
        #expect(Timestamp.httpDate(951_868_799_999) == "Tue, 29 Feb 2000 23:59:59 GMT")
        // The largest timestamp a client may ask for: a year of six digits, written out whole.
        #expect(Timestamp.httpDate(Timestamp.maxRequested).hasSuffix(" 287396 08:59:00 GMT"))
    }
}
