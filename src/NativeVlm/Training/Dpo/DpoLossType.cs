namespace NativeVlm.Training.Dpo;

/// <summary>The loss types of TRL's DPOTrainer (<c>loss_type</c>), plus MPO's <c>sft</c>.</summary>
public enum DpoLossType
{
    Sigmoid,
    Hinge,
    Ipo,
    ExoPair,
    NcaPair,
    Robust,
    BcoPair,
    SppoHard,
    Aot,
    AotPair,
    ApoZero,
    ApoDown,
    Sft,
}

/// <summary>TRL's names of <see cref="DpoLossType"/> ("sigmoid", "exo_pair", …), both ways.</summary>
public static class DpoLossTypes
{
    private static readonly (DpoLossType Type, string Name)[] Names =
    [
        (DpoLossType.Sigmoid, "sigmoid"), (DpoLossType.Hinge, "hinge"), (DpoLossType.Ipo, "ipo"),
        (DpoLossType.ExoPair, "exo_pair"), (DpoLossType.NcaPair, "nca_pair"), (DpoLossType.Robust, "robust"),
        (DpoLossType.BcoPair, "bco_pair"), (DpoLossType.SppoHard, "sppo_hard"), (DpoLossType.Aot, "aot"),
        (DpoLossType.AotPair, "aot_pair"), (DpoLossType.ApoZero, "apo_zero"), (DpoLossType.ApoDown, "apo_down"),
        (DpoLossType.Sft, "sft"),
    ];

    /// <summary>Every TRL name, in TRL's order.</summary>
    public static IReadOnlyList<string> All => Names.Select(n => n.Name).ToList();

    public static string Name(this DpoLossType type) => Names.First(n => n.Type == type).Name;

    /// <summary>The type TRL calls <paramref name="name"/>; an unknown name is an error listing the known ones.</summary>
    public static DpoLossType Parse(string name)
    {
        foreach ((DpoLossType type, string known) in Names)
        {
            if (string.Equals(known, name.Trim(), StringComparison.Ordinal))
            {
                return type;
            }
        }
        throw new ArgumentException($"unknown loss type '{name}'; the loss types are {string.Join(", ", All)}");
    }
}
