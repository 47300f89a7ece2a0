// SPDX-License-Identifier: UNLICENSED
pragma solidity 0.8.37;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IConsentRegistry} from "./interfaces/IConsentRegistry.sol";

/**
 * @title ConsentRegistry
 * @notice Patients' consent grants to researchers, and the verdict a gateway asks for before it
 * discloses a reading.
 * @dev Roles: DEFAULT_ADMIN_ROLE (given to `admin` at deployment) grants and revokes
 * HOSPITAL_ADMIN_ROLE; HOSPITAL_ADMIN_ROLE binds patient addresses to patientRefs. Grants and
 * revocations need no role: only the address bound to the patientRef may make them.
 *
 * Bounds: no state-changing function loops over more than MAX_OPEN_GRANTS_PER_PAIR entries,
 * and isPermitted reads at most that many grants, whatever the number of patients, researchers
 * or grants overall.
 */
contract ConsentRegistry is AccessControl, IConsentRegistry {
    /// @notice May bind patient addresses to patientRefs.
    bytes32 public constant HOSPITAL_ADMIN_ROLE = keccak256("HOSPITAL_ADMIN_ROLE");

    /// @notice Most grants one (patientRef, researcher) pair may hold that are neither revoked nor expired.
    /// @dev Bounds the loop of isPermitted: about 5,300 gas per grant read (two cold slots), 32 in all under 210,000.
    uint256 public constant MAX_OPEN_GRANTS_PER_PAIR = 32;

    /// @dev Highest grant id given out; ids start at 1, so 0 is never a grant.
    uint64 private _lastGrantId;
    /// @dev A grant exists iff its patientRef is not zero (grant() refuses a zero ref: nobody is bound to it).
    mapping(uint64 grantId => Grant) private _grants;
    mapping(bytes32 patientRef => address patient) private _patientOf;
    mapping(address patient => bytes32 patientRef) private _patientRefOf;
    mapping(bytes32 patientRef => uint64[] grantIds) private _grantIdsOf;
    mapping(address researcher => uint64[] grantIds) private _grantIdsFor;
    /// @dev The pair's grants that may still be in force, oldest first. Revoked and expired grants
    /// stay until the list is full; grant() then drops them (_prune), keeping the order.
    mapping(bytes32 patientRef => mapping(address researcher => uint64[] grantIds)) private _openGrants;

    /// @param admin Receives DEFAULT_ADMIN_ROLE, which grants HOSPITAL_ADMIN_ROLE.
    constructor(address admin) {
        if (admin == address(0)) revert ConsentRegistryZeroAdmin();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @inheritdoc IConsentRegistry
    function bindPatient(bytes32 patientRef, address patient) external onlyRole(HOSPITAL_ADMIN_ROLE) {
        if (patientRef == bytes32(0)) revert ConsentRegistryZeroPatientRef();
        if (patient == address(0)) revert ConsentRegistryZeroPatient(patientRef);
        bytes32 boundTo = _patientRefOf[patient];
        if (boundTo != bytes32(0)) revert ConsentRegistryAddressAlreadyBound(patient, boundTo);

        address previous = _patientOf[patientRef];
        // The old key loses control now; it may be bound again later, to this ref or another.
        if (previous != address(0)) delete _patientRefOf[previous];
        _patientOf[patientRef] = patient;
        _patientRefOf[patient] = patientRef;
        emit PatientBound(patientRef, patient, previous);
    }

    /// @inheritdoc IConsentRegistry
    function grant(
        bytes32 patientRef,
        address researcher,
        uint16 sensorMask,
        uint64 dataFromMs,
        uint64 dataToMs,
        uint64 expiresAtMs,
        bytes32 purposeRef
    ) external returns (uint64 grantId) {
        _requirePatient(patientRef);
        if (researcher == address(0)) revert ConsentRegistryZeroResearcher();
        // Bit c stands for sensor code c; there is no code 0 (PROTOCOL.md §4).
        if (sensorMask == 0 || sensorMask & 1 != 0) revert ConsentRegistryBadSensorMask(sensorMask);
        if (dataFromMs > dataToMs) revert ConsentRegistryInvertedDataWindow(dataFromMs, dataToMs);
        uint64 nowMs = _nowMs();
        if (expiresAtMs <= nowMs) revert ConsentRegistryExpiryNotInFuture(expiresAtMs, nowMs);
        if (purposeRef == bytes32(0)) revert ConsentRegistryZeroPurposeRef();

        uint64[] storage open = _openGrants[patientRef][researcher];
        if (open.length >= MAX_OPEN_GRANTS_PER_PAIR) {
            _prune(open, nowMs);
            if (open.length >= MAX_OPEN_GRANTS_PER_PAIR) {
                revert ConsentRegistryTooManyOpenGrants(patientRef, researcher, MAX_OPEN_GRANTS_PER_PAIR);
            }
        }

        grantId = ++_lastGrantId;
        Grant storage g = _grants[grantId];
        g.patientRef = patientRef;
        g.purposeRef = purposeRef;
        g.researcher = researcher;
        g.sensorMask = sensorMask;
        g.dataFromMs = dataFromMs;
        g.dataToMs = dataToMs;
        g.expiresAtMs = expiresAtMs;
        g.grantedAtMs = nowMs;
        open.push(grantId);
        _grantIdsOf[patientRef].push(grantId);
        _grantIdsFor[researcher].push(grantId);
        emit ConsentGranted(grantId, patientRef, researcher, sensorMask, dataFromMs, dataToMs, expiresAtMs, purposeRef);
    }

    /// @inheritdoc IConsentRegistry
    function revoke(uint64 grantId) external {
        Grant storage g = _grants[grantId];
        bytes32 patientRef = g.patientRef;
        if (patientRef == bytes32(0)) revert ConsentRegistryUnknownGrant(grantId);
        _requirePatient(patientRef);
        uint64 revokedAtMs = g.revokedAtMs;
        if (revokedAtMs != 0) revert ConsentRegistryAlreadyRevoked(grantId, revokedAtMs);

        // Block timestamps are > 0 after genesis, so nowMs is never the "not revoked" mark 0.
        uint64 nowMs = _nowMs();
        g.revokedAtMs = nowMs;
        emit ConsentRevoked(grantId, patientRef, g.researcher, nowMs);
    }

    /// @inheritdoc IConsentRegistry
    function getGrant(uint64 grantId) external view returns (Grant memory) {
        Grant memory g = _grants[grantId];
        if (g.patientRef == bytes32(0)) revert ConsentRegistryUnknownGrant(grantId);
        return g;
    }

    /// @inheritdoc IConsentRegistry
    function patientOf(bytes32 patientRef) external view returns (address) {
        return _patientOf[patientRef];
    }

    /// @inheritdoc IConsentRegistry
    function patientRefOf(address patient) external view returns (bytes32) {
        return _patientRefOf[patient];
    }

    /// @inheritdoc IConsentRegistry
    function grantIdsOf(bytes32 patientRef) external view returns (uint64[] memory) {
        return _grantIdsOf[patientRef];
    }

    /// @inheritdoc IConsentRegistry
    function grantIdsFor(address researcher) external view returns (uint64[] memory) {
        return _grantIdsFor[researcher];
    }

    /// @inheritdoc IConsentRegistry
    function isPermitted(address researcher, bytes32 patientRef, uint8 sensor, uint64 recordedAtMs)
        external
        view
        returns (bool permitted, uint64 grantId)
    {
        uint64 nowMs = _nowMs();
        uint64[] storage open = _openGrants[patientRef][researcher];
        uint256 n = open.length; // at most MAX_OPEN_GRANTS_PER_PAIR
        for (uint256 i; i < n; ++i) {
            uint64 id = open[i];
            if (_status(_grants[id], sensor, recordedAtMs, nowMs) == GrantStatus.OK) return (true, id);
        }
        return (false, 0);
    }

    /// @inheritdoc IConsentRegistry
    function checkGrant(uint64 grantId, address researcher, uint8 sensor, uint64 recordedAtMs)
        external
        view
        returns (GrantStatus code)
    {
        Grant storage g = _grants[grantId];
        if (g.patientRef == bytes32(0)) return GrantStatus.UNKNOWN_GRANT;
        if (g.researcher != researcher) return GrantStatus.NOT_GRANTEE;
        return _status(g, sensor, recordedAtMs, _nowMs());
    }

    /// @dev Reverts unless the caller is the address bound to `patientRef` (none is bound to zero).
    function _requirePatient(bytes32 patientRef) private view {
        address patient = _patientOf[patientRef];
        // msg.sender is never the zero address, so an unbound ref fails here too.
        if (msg.sender != patient) revert ConsentRegistryNotPatient(patientRef, patient, msg.sender);
    }

    /// @dev The checks of checkGrant after the grantee's, in GrantStatus order.
    function _status(Grant storage g, uint8 sensor, uint64 recordedAtMs, uint64 nowMs) private view returns (GrantStatus) {
        if (g.revokedAtMs != 0) return GrantStatus.REVOKED;
        if (nowMs >= g.expiresAtMs) return GrantStatus.EXPIRED;
        // A shift by 16 or more gives 0: codes above 15 are never granted; bit 0 is never set.
        if ((g.sensorMask >> sensor) & 1 == 0) return GrantStatus.SENSOR_NOT_GRANTED;
        if (recordedAtMs < g.dataFromMs || recordedAtMs > g.dataToMs) return GrantStatus.OUTSIDE_DATA_WINDOW;
        return GrantStatus.OK;
    }

    /// @dev Drops revoked and expired grants from a pair's open list, keeping the order of the rest.
    /// Expiry is absolute and block time only grows, so a dropped grant can never be in force again.
    function _prune(uint64[] storage open, uint64 nowMs) private {
        uint256 n = open.length; // at most MAX_OPEN_GRANTS_PER_PAIR
        uint256 kept;
        for (uint256 i; i < n; ++i) {
            uint64 id = open[i];
            Grant storage g = _grants[id];
            if (g.revokedAtMs == 0 && nowMs < g.expiresAtMs) {
                if (kept != i) open[kept] = id;
                ++kept;
            }
        }
        while (open.length > kept) open.pop();
    }

    /// @dev Block time in Unix ms, the unit of every time here.
    function _nowMs() private view returns (uint64) {
        return uint64(block.timestamp) * 1000;
    }
}
