using NativeVlm.Interop;
using NativeVlm.Tensors;

namespace NativeVlm.Autograd;

/// <summary>
/// One recorded op: its output, the closure that adds d(output) into its inputs' grads, and a hold on
/// the storage of every tensor that closure reads. The holds keep those storages alive after their
/// tensors are disposed (a model frees each layer's other intermediates when the layer's forward ends),
/// until the node's backward has run or the tape is done. Activations are held inexactly: their storage
/// may be narrowed to bf16 meanwhile (<see cref="Context.SavedActivationDType"/>).
/// </summary>
internal sealed class Node
{
    private (Storage Storage, bool Exact)[]? _held;

    public Node(string name, Tensor output, Action<Tensor> backward, Tensor?[] saved, Tensor?[] activations)
    {
        Name = name;
        Output = output;
        Backward = backward;
        _held = saved.OfType<Tensor>().Select(t => (t.Storage, Exact: true))
            .Concat(activations.OfType<Tensor>().Select(t => (t.Storage, Exact: false)))
            .ToArray();
        foreach ((Storage storage, bool exact) in _held)
        {
            storage.Hold(exact);
        }
    }

    public string Name { get; }

    public Tensor Output { get; }

    /// <summary>Receives d(loss)/d(output) and adds into the gradients of the inputs that want one.</summary>
    public Action<Tensor> Backward { get; }

    /// <summary>Lets go of the saved storages (once): the backward will not run again.</summary>
    public void ReleaseSaved()
    {
        (Storage Storage, bool Exact)[]? held = Interlocked.Exchange(ref _held, null);
        if (held != null)
        {
            foreach ((Storage storage, bool exact) in held)
            {
                storage.ReleaseHold(exact);
            }
        }
    }
}

/// <summary>
/// Records ops while it is current and grad mode is on, and owns the tensors they create (it
/// is a <see cref="TensorScope"/>). Nodes are kept in execution order, which is a topological
/// order, so <see cref="Backward(Tensor, Tensor)"/> walks it in reverse.
/// Gradient rule: every backward adds (+=) into input gradients, which start at zero.
/// </summary>
public sealed class Tape : TensorScope
{
    [ThreadStatic] private static Tape? _currentTape;
    [ThreadStatic] private static int _noGradDepth;

    private readonly Tape? _outerTape;
    private readonly List<Node> _nodes = [];

    public Tape()
    {
        _outerTape = _currentTape;
        _currentTape = this;
    }

    /// <summary>True when an op run now would be recorded (if one of its inputs requires grad).</summary>
    public static bool IsRecording => _currentTape != null && _noGradDepth == 0;

    internal static void Record(Node node) => _currentTape!._nodes.Add(node);

    /// <summary>Ops inside run without recording, as torch.no_grad.</summary>
    public static IDisposable NoGrad()
    {
        _noGradDepth++;
        return new NoGradScope();
    }

    private sealed class NoGradScope : IDisposable
    {
        private bool _disposed;

        public void Dispose()
        {
            if (!_disposed)
            {
                _disposed = true;
                _noGradDepth--;
            }
        }
    }

    /// <summary>Backward from a scalar loss (seed 1).</summary>
    public void Backward(Tensor loss)
    {
        if (loss.ElementCount != 1)
        {
            throw new ArgumentException($"Backward(loss) needs a single-element tensor, got {loss}; pass a gradient for the output");
        }
        using Tensor seed = Tensor.FromArray(loss.Context, [1f], loss.Shape.ToArray());
        Backward(loss, seed);
    }

    /// <summary>Backward from <paramref name="output"/> with d(loss)/d(output) = <paramref name="gradOutput"/>.</summary>
    public void Backward(Tensor output, Tensor gradOutput)
    {
        if (!gradOutput.Shape.SequenceEqual(output.Shape))
        {
            throw new ArgumentException($"gradient {gradOutput} does not match output {output}");
        }
        if (!output.RequiresGrad)
        {
            throw new InvalidOperationException($"{output} does not require grad: nothing on the tape leads to it");
        }
        Native.Check(NativeMethods.nvlm_residual_backward(output.Context.Handle, Ops.GradBuffer(output),
            BufferHandle.Null, gradOutput.Buffer, output.ElementCount));

        for (int i = _nodes.Count - 1; i >= 0; i--)
        {
            Node node = _nodes[i];
            Tensor? grad = node.Output.Grad;
            if (grad == null)
            {
                node.ReleaseSaved();
                continue;
            }
            node.Backward(grad);
            node.ReleaseSaved();
            // An op output's gradient has been passed on to the op's inputs and is no longer needed.
            node.Output.Grad = null;
            grad.Dispose();
        }
        _nodes.Clear();
    }

    public override void Dispose()
    {
        if (_currentTape == this)
        {
            _currentTape = _outerTape;
        }
        _nodes.ForEach(node => node.ReleaseSaved());
        _nodes.Clear();
        base.Dispose();
    }
}
