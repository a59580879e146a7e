namespace NativeVlm.Autograd;

/// <summary>
/// A random generator whose whole state can be read and set: what <see cref="Checkpoint"/> needs to
/// make a recomputed segment draw the values its first forward drew.
/// </summary>
public interface IRandomState
{
    /// <summary>The generator's state; setting it makes the next draws those that followed when it was read.</summary>
    ulong[] State { get; set; }
}
