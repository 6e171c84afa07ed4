import FerryCore

/// What a two-way run does with a record changed on both sides since the base.
public enum ConflictPolicy: String, Sendable, CaseIterable {
    /// A's state wins, a delete included (an update on B against a delete on A deletes on B).
    case aWins = "a-wins"
    /// B's state wins, a delete included.
    case bWins = "b-wins"
    /// The newer side wins, by a named field or the servers' timestamps; a live record beats a
    /// delete (deletes carry no time to compare), ties go to the larger content hash.
    case newestWins = "newest-wins"
    /// Both sides are left as they are and the conflict is logged for `ferry conflicts resolve`.
    case manual
}

/// One side's state of a record in a two-way run.
struct SideState: Sendable, Equatable {
    /// The content hash (``RecordHash``, in hex); nil when the record is not there (never created, or deleted).
    var hash: String?
    /// The server's version (`last_modified`), where the side has one.
    var version: Int64? = nil
    /// What newest-wins compares: the named field's value, or the server's version when the
    /// job names no field; nil when the record has neither.
    var newest: JSON? = nil

    static let absent = SideState(hash: nil)
}

/// The decision for one record: pure, so every run and every order of arrival decides the same.
enum TwoWayDecision: Equatable {
    /// Both sides agree; the base becomes their hash (nil: forget the record).
    case agree(String?)
    case copyAToB
    case copyBToA
    /// Changed on both sides and the policy is manual.
    case conflict
    /// Changed on both sides; the policy picked A (or B).
    case conflictAWins
    case conflictBWins

    /// - Parameters:
    ///   - base: the hash both sides agreed on after the last run (nil: no record then).
    static func decide(a: SideState, b: SideState, base: String?, policy: ConflictPolicy) -> TwoWayDecision {
        if a.hash == b.hash { return .agree(a.hash) }
        let aChanged = a.hash != base
        let bChanged = b.hash != base
        if aChanged && !bChanged { return .copyAToB }
        if bChanged && !aChanged { return .copyBToA }
        switch policy {
        case .aWins: return .conflictAWins
        case .bWins: return .conflictBWins
        case .manual: return .conflict
        case .newestWins: return newerIsA(a, b) ? .conflictAWins : .conflictBWins
        }
    }

    /// Whether A is the newer side: a live record beats a delete; then the newest-wins field
    /// (or the server version); a tie goes to the larger content hash, as CouchDB picks its winning revision.
    static func newerIsA(_ a: SideState, _ b: SideState) -> Bool {
        guard let ha = a.hash else { return false }
        guard let hb = b.hash else { return true }
        if let na = a.newest, let nb = b.newest {
            let order = JSON.cursorOrder(na, nb)
            if order != 0 { return order > 0 }
        } else if a.newest != nil || b.newest != nil {
            // Only one side has the field: that side is newer than one that lacks it.
            return a.newest != nil
        }
        return ha > hb
    }
}
