/// The state a sync job is seen in at the end of one interval of its service's life.
public enum SyncHealthState: String, CaseIterable, Sendable {
    /// The last run succeeded and nothing is waiting to be read.
    case inSync = "in_sync"
    /// A run is going on, a change is waiting, or no run has finished yet.
    case catchingUp = "catching_up"
    /// The last run failed or rejected records (a retry may be under way).
    case failing
    /// The service was not running the job.
    case stopped

    /// How a job's last finished run ended, as far as its health goes.
    public enum LastRun: Sendable { case succeeded, stoppedEarly, failed }

    /// The state of a job from what its service knows now.
    /// - Parameters:
    ///   - running: a run of the job is going on.
    ///   - lastRun: how its last finished run ended; nil before the first.
    ///   - changePending: the source announced a change no run has started to read.
    public static func observe(running: Bool, lastRun: LastRun?, changePending: Bool) -> SyncHealthState {
        if lastRun == .failed { return .failing }
        if running || changePending || lastRun != .succeeded { return .catchingUp }
        return .inSync
    }
}

/// A Markov chain of a job's health, estimated from the states it was seen in, one per interval.
///
/// Transition probabilities are the observed frequencies (each row's counts over its total; the
/// counts are kept so that small samples show). A state never seen to be left (no transition out
/// of it recorded) is taken to stay where it is: the estimate does not invent a way out. From the
/// chain: the long-run share of intervals in each state (starting from the current state; this
/// is the stationary distribution when every state reaches every other), the mean time to
/// recovery (mean first-passage time from failing to in sync) and the probability of being in
/// sync k intervals ahead.
///
/// ```swift
/// let model = try SyncHealthModel(history: [(.inSync, 40), (.failing, 2), (.inSync, 20)])
/// model.meanTimeToRecovery  // .intervals(2.0)
/// ```
public struct SyncHealthModel: Sendable {
    /// Fewer transitions than this and the estimate is refused (see ``NotEnoughData``).
    public static let defaultMinimumTransitions = 10

    /// Too little history: the counts would say more about chance than about the job.
    public struct NotEnoughData: Error, Sendable, Equatable, CustomStringConvertible {
        public let transitions: Int
        public let needed: Int
        public init(transitions: Int, needed: Int) {
            self.transitions = transitions
            self.needed = needed
        }
        public var description: String {
            "not enough data: \(transitions) transition\(transitions == 1 ? "" : "s") recorded, the model needs at least \(needed)"
        }
    }

    /// How a failing job gets back in sync, by the estimate.
    public enum Recovery: Sendable, Equatable {
        /// Mean first-passage time from failing to in sync, in intervals.
        case intervals(Double)
        /// From failing, the recorded chain can end where in sync is never reached again.
        case never
        /// The job was never seen failing.
        case neverFailed
    }

    /// The states, in the order of every row and column below.
    public static let states = SyncHealthState.allCases
    /// `counts[i][j]`: intervals that ended in state j after one that ended in state i.
    public let counts: [[Int]]
    /// Every transition counted.
    public let transitions: Int
    /// The estimated transition matrix; a row with no transition out is an unchanging row.
    public let probabilities: [[Double]]
    /// The states with at least one transition out of them recorded.
    public let observed: Set<SyncHealthState>
    /// The state of the last interval recorded.
    public let current: SyncHealthState
    /// The long-run share of intervals in each state, from ``current``.
    public let longRun: [Double]
    /// Every state seen reaches every other one seen (then ``longRun`` is the one stationary distribution).
    public let irreducible: Bool
    public let meanTimeToRecovery: Recovery

    /// Estimates the chain from a job's history, oldest first, as runs of one state:
    /// `(.inSync, 3)` is three intervals in sync in a row.
    public init(history: [(state: SyncHealthState, intervals: Int)], minimumTransitions: Int = defaultMinimumTransitions) throws(NotEnoughData) {
        var counts = Array(repeating: Array(repeating: 0, count: Self.states.count), count: Self.states.count)
        var previous: Int?
        for (state, intervals) in history where intervals > 0 {
            let i = Self.index(state)
            if let previous { counts[previous][i] += 1 }
            counts[i][i] += intervals - 1
            previous = i
        }
        guard let previous else { throw NotEnoughData(transitions: 0, needed: minimumTransitions) }
        try self.init(counts: counts, current: Self.states[previous], minimumTransitions: minimumTransitions)
    }

    /// Estimates the chain from transition counts (rows and columns in ``states`` order).
    public init(counts: [[Int]], current: SyncHealthState, minimumTransitions: Int = defaultMinimumTransitions) throws(NotEnoughData) {
        let n = Self.states.count
        precondition(counts.count == n && counts.allSatisfy { $0.count == n }, "counts must be \(n)×\(n)")
        let transitions = counts.joined().reduce(0, +)
        guard transitions >= minimumTransitions, transitions > 0 else {
            throw NotEnoughData(transitions: transitions, needed: max(minimumTransitions, 1))
        }
        self.counts = counts
        self.transitions = transitions
        self.current = current
        var observed = Set<SyncHealthState>()
        probabilities = (0..<n).map { i in
            let total = counts[i].reduce(0, +)
            guard total > 0 else { return (0..<n).map { $0 == i ? 1 : 0 } }
            observed.insert(Self.states[i])
            return counts[i].map { Double($0) / Double(total) }
        }
        self.observed = observed
        let chain = Chain(p: probabilities)
        let seen = (0..<n).filter { i in counts[i].contains { $0 > 0 } || counts.contains { $0[i] > 0 } || Self.states[i] == current }
        irreducible = seen.allSatisfy { i in seen.allSatisfy { chain.reach[i][$0] } }
        longRun = chain.longRun(from: Self.index(current))
        let failing = Self.index(.failing)
        if !seen.contains(failing) {
            meanTimeToRecovery = .neverFailed
        } else {
            meanTimeToRecovery = chain.meanFirstPassage(from: failing, to: Self.index(.inSync)).map(Recovery.intervals) ?? .never
        }
    }

    /// The probability that the job is in sync `k` intervals after the last one recorded.
    public func inSyncProbability(ahead k: Int) -> Double {
        let chain = Chain(p: probabilities)
        var distribution = Self.states.map { $0 == current ? 1.0 : 0.0 }
        for _ in 0..<max(k, 0) { distribution = chain.step(distribution) }
        return distribution[Self.index(.inSync)]
    }

    /// The long-run share of intervals in a state.
    public func share(_ state: SyncHealthState) -> Double { longRun[Self.index(state)] }

    /// The row of counts out of a state.
    public func counts(from state: SyncHealthState) -> [Int] { counts[Self.index(state)] }

    static func index(_ state: SyncHealthState) -> Int { states.firstIndex(of: state)! }
}

/// The arithmetic over a transition matrix, on state indices.
struct Chain {
    let p: [[Double]]
    /// `reach[i][j]`: j can follow i after zero or more steps.
    let reach: [[Bool]]

    init(p: [[Double]]) {
        self.p = p
        let n = p.count
        var reach = (0..<n).map { i in (0..<n).map { j in i == j || p[i][j] > 0 } }
        for k in 0..<n { for i in 0..<n where reach[i][k] { for j in 0..<n where reach[k][j] { reach[i][j] = true } } }
        self.reach = reach
    }

    func step(_ distribution: [Double]) -> [Double] {
        (0..<p.count).map { j in (0..<p.count).reduce(0) { $0 + distribution[$1] * p[$1][j] } }
    }

    /// The Cesàro limit of the distribution started in `start`: the shares of each closed class's
    /// stationary distribution, weighted by the probability of ending in that class.
    func longRun(from start: Int) -> [Double] {
        let n = p.count
        var result = Array(repeating: 0.0, count: n)
        // Closed classes: a state whose every successor leads back to it, grouped with those.
        var assigned = Set<Int>()
        for i in 0..<n where !assigned.contains(i) {
            let members = (0..<n).filter { reach[i][$0] && reach[$0][i] }
            assigned.formUnion(members)
            let closed = members.allSatisfy { m in (0..<n).allSatisfy { !reach[m][$0] || members.contains($0) } }
            guard closed else { continue }
            let weight = hittingProbability(from: start, into: Set(members))
            guard weight > 0 else { continue }
            for (m, share) in zip(members, stationary(members)) { result[m] += weight * share }
        }
        return result
    }

    /// The stationary distribution of a closed class: π = πP restricted to it, Σπ = 1.
    func stationary(_ members: [Int]) -> [Double] {
        let k = members.count
        // Rows: the balance equations of all but the last member, then the sum.
        var a = (0..<k).map { row in (0..<k).map { col in p[members[col]][members[row]] - (row == col ? 1 : 0) } }
        var b = Array(repeating: 0.0, count: k)
        a[k - 1] = Array(repeating: 1, count: k)
        b[k - 1] = 1
        return Self.solve(a, b) ?? Array(repeating: 1 / Double(k), count: k)
    }

    /// The probability of ever entering `targets` from `start`.
    func hittingProbability(from start: Int, into targets: Set<Int>) -> Double {
        if targets.contains(start) { return 1 }
        let unknown = (0..<p.count).filter { i in !targets.contains(i) && targets.contains { reach[i][$0] } }
        guard let position = unknown.firstIndex(of: start) else { return 0 }
        // h_i − Σ_{j unknown} P_ij h_j = Σ_{j ∈ targets} P_ij
        let a = unknown.map { i in unknown.map { j in (i == j ? 1 : 0) - p[i][j] } }
        let b = unknown.map { i in targets.reduce(0) { $0 + p[i][$1] } }
        return Self.solve(a, b)?[position] ?? 0
    }

    /// The mean number of steps from `start` to the first visit of `target`; nil when, from
    /// `start`, the chain may never get there.
    func meanFirstPassage(from start: Int, to target: Int) -> Double? {
        if start == target { return 0 }
        let sure = (0..<p.count).filter { $0 != target && abs(hittingProbability(from: $0, into: [target]) - 1) < 1e-9 }
        guard let position = sure.firstIndex(of: start) else { return nil }
        // m_i − Σ_{j sure} P_ij m_j = 1 (a sure state's successors are all sure or the target)
        let a = sure.map { i in sure.map { j in (i == j ? 1 : 0) - p[i][j] } }
        return Self.solve(a, Array(repeating: 1, count: sure.count))?[position]
    }

    /// Gaussian elimination with partial pivoting; nil for a singular system.
    static func solve(_ matrix: [[Double]], _ rhs: [Double]) -> [Double]? {
        var a = matrix
        var b = rhs
        let n = b.count
        for column in 0..<n {
            guard let pivot = (column..<n).max(by: { abs(a[$0][column]) < abs(a[$1][column]) }), abs(a[pivot][column]) > 1e-12 else { return nil }
            a.swapAt(column, pivot)
            b.swapAt(column, pivot)
            for row in 0..<n where row != column {
                let factor = a[row][column] / a[column][column]
                guard factor != 0 else { continue }
                for k in column..<n { a[row][k] -= factor * a[column][k] }
                b[row] -= factor * b[column]
            }
        }
        return (0..<n).map { b[$0] / a[$0][$0] }
    }
}
